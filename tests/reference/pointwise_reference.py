"""Point-by-point reference values for tests/pointwise.rs (issue 10 item 14): scikit-learn's
OneClassSVM.decision_function, GaussianMixture.score_samples and PCA projections on fixed
data, each with an easy and a hard case.

Run once (pip install scikit-learn numpy) from the repository root:
    python3 tests/reference/pointwise_reference.py > tests/fixtures/pointwise_sklearn.json
"""
import json

import numpy as np
import sklearn
from sklearn.decomposition import PCA
from sklearn.mixture import GaussianMixture
from sklearn.svm import OneClassSVM

rng = np.random.default_rng(11)


def two_clusters(n, d):
    a = rng.normal(0.0, 1.0, size=(n // 2, d))
    b = rng.normal(3.0, 0.5, size=(n - n // 2, d))
    return np.vstack([a, b])


out = {"sklearn_version": sklearn.__version__, "ocsvm": [], "gmm": [], "pca": []}

# One-class SVM. Easy: default-like settings on 2-D clusters. Hard: overlapping 5-D data,
# nu = 0.5 and a narrow fixed kernel (many support vectors, scores near 0 everywhere).
for name, d, nu, gamma in [("easy_2d", 2, 0.1, "scale"), ("hard_5d", 5, 0.5, 2.0)]:
    train = two_clusters(300, d)
    test = np.vstack([two_clusters(60, d), rng.uniform(-4, 7, size=(40, d))])
    svm = OneClassSVM(nu=nu, gamma=gamma, tol=1e-6).fit(train)
    out["ocsvm"].append({
        "name": name, "nu": nu, "gamma": None if gamma == "scale" else gamma,
        "train": train.tolist(), "test": test.tolist(),
        "decision_function": svm.decision_function(test).tolist(),
    })

# GMM: one component (a unique maximum-likelihood fit), and two well-separated components
# scored at points far outside the data (the hard case for a naive likelihood).
for name, k, d in [("one_component_3d", 1, 3), ("two_components_far_points", 2, 2)]:
    if k == 1:
        train = rng.normal([1.0, -2.0, 0.5], [1.0, 0.3, 2.0], size=(400, d))
    else:
        train = np.vstack([rng.normal([0, 0], 0.5, size=(200, 2)), rng.normal([8, 8], 1.0, size=(200, 2))])
    test = np.vstack([train[:20], rng.uniform(-50, 50, size=(20, d)), [[1e3] * d]])
    g = GaussianMixture(n_components=k, covariance_type="full", random_state=0, tol=1e-8, max_iter=500).fit(train)
    out["gmm"].append({
        "name": name, "components": k, "train": train.tolist(), "test": test.tolist(),
        "score_samples": g.score_samples(test).tolist(),
    })

# PCA on u8 pixel images scaled to [0, 1]. Hard: a constant pixel and two nearly collinear
# pixels.
for name, n, d, m in [("easy", 200, 12, 2), ("hard", 150, 16, 3)]:
    pixels = rng.integers(0, 256, size=(n, d)).astype(np.uint8)
    if name == "hard":
        pixels[:, 0] = 77
        pixels[:, 5] = np.clip(pixels[:, 4].astype(int) + rng.integers(-2, 3, size=n), 0, 255)
        pixels[:, 9] = (pixels[:, 3].astype(int) // 2 + 60).astype(np.uint8)
    x = pixels.astype(float) / 255.0
    p = PCA(n_components=m).fit(x)
    out["pca"].append({
        "name": name, "components": m, "pixels": pixels.tolist(),
        "projection": p.transform(x).tolist(),
    })

print(json.dumps(out))
