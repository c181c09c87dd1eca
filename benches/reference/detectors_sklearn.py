"""scikit-learn timings for the detectors bench (bench-time only).

Same data as benches/detectors.rs (a hash of row and column, no shared file), same
settings: IsolationForest(100 trees, 256 samples), LocalOutlierFactor(20, novelty=True),
GaussianMixture(full) with BIC over 1..5 components, OneClassSVM(nu=0.1, gamma="scale").
Prints one JSON object per (detector, shape) with the median seconds of fit and score.
"""
import argparse
import json
import time

import numpy as np
from sklearn.ensemble import IsolationForest
from sklearn.mixture import GaussianMixture
from sklearn.neighbors import LocalOutlierFactor
from sklearn.svm import OneClassSVM


def points(n, d):
    i = np.arange(n, dtype=np.float64)[:, None]
    j = np.arange(d, dtype=np.float64)[None, :]
    v = np.sin(i * 12.9898 + j * 78.233) * 43758.5453
    return v - np.floor(v)


def gmm_bic(x):
    best = None
    for k in range(1, 6):
        g = GaussianMixture(n_components=k, covariance_type="full", random_state=k).fit(x)
        b = g.bic(x)
        if best is None or b < best[0]:
            best = (b, g)
    return best[1]


DETECTORS = {
    "isolation_forest": (lambda x: IsolationForest(n_estimators=100, max_samples=256,
                                                   random_state=0).fit(x),
                         lambda m, x: m.score_samples(x)),
    "lof": (lambda x: LocalOutlierFactor(n_neighbors=20, novelty=True).fit(x),
            lambda m, x: m.score_samples(x)),
    "gmm": (gmm_bic, lambda m, x: m.score_samples(x)),
    "one_class_svm": (lambda x: OneClassSVM(nu=0.1, gamma="scale").fit(x),
                      lambda m, x: m.decision_function(x)),
}


def median_time(f, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = f()
        times.append(time.perf_counter() - t)
    return float(np.median(times)), out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    for d in (2, 16):
        x = points(6000, d)
        for name, (fit, score) in DETECTORS.items():
            fit_s, model = median_time(lambda: fit(x), args.repeats)
            score_s, _ = median_time(lambda: score(model, x), args.repeats)
            print(json.dumps({"detector": name, "shape": f"6000x{d}",
                              "fit_s": fit_s, "score_s": score_s}), flush=True)


if __name__ == "__main__":
    main()
