"""Reference values for eidn's paired statistics (src/report/paired.rs), from scipy.

Writes tests/fixtures/paired_scipy.json: for each case, the differences, scipy.stats.wilcoxon's
two-sided p-value with its defaults (the value eidn must match to 1e-12) and the 95 %
percentile-bootstrap interval of the mean from scipy.stats.bootstrap with 200,000 resamples
(eidn's own 10,000 resamples must land within a small share of the standard error of it).

    python3 tests/reference/paired_reference.py   # scipy 1.17.1, numpy 2.4.6 when written
"""

import json
import pathlib

import numpy as np
import scipy
from scipy import stats


def cases():
    rng = np.random.default_rng(20261206)
    yield "exact, 8 distinct", rng.normal(0.01, 0.02, 8)
    yield "exact, 30 distinct", rng.normal(0.004, 0.01, 30)
    yield "exact, 50 distinct, all positive", np.abs(rng.normal(0.0, 0.01, 50)) + 1e-6
    # AUC differences rounded to 3 digits: ties and a zero.
    yield "permutation, 10 with ties and a zero", np.round(rng.normal(0.002, 0.004, 10), 3)
    yield "permutation, 13 with ties", np.round(rng.normal(-0.003, 0.004, 13), 3)
    yield "normal approximation, 14 with ties", np.round(rng.normal(0.003, 0.004, 14), 3)
    yield "normal approximation, 40 with ties", np.round(rng.normal(0.001, 0.003, 40), 3)
    yield "normal approximation, 60 distinct", rng.normal(0.002, 0.01, 60)
    yield "normal approximation, 120 with ties", np.round(rng.normal(-0.001, 0.005, 120), 3)


def main():
    out = []
    for name, d in cases():
        d = [float(x) for x in d]
        p = float(stats.wilcoxon(d).pvalue)
        boot = stats.bootstrap((np.array(d),), np.mean, confidence_level=0.95,
                               n_resamples=200_000, method="percentile",
                               rng=np.random.default_rng(0))
        ci = boot.confidence_interval
        out.append({
            "name": name,
            "diffs": d,
            "wilcoxon_p": p,
            "bootstrap_ci": [float(ci.low), float(ci.high)],
            "standard_error": float(np.std(d, ddof=1) / np.sqrt(len(d))),
        })
    path = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "paired_scipy.json"
    doc = {"scipy": scipy.__version__, "numpy": np.__version__, "cases": out}
    path.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
