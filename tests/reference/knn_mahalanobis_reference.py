"""Reference scores of scikit-learn for the kNN and Mahalanobis detectors (tests/detectors.rs):
`NearestNeighbors(n_neighbors=k).kneighbors(test)` mean distance, and
`LedoitWolf().fit(train).mahalanobis(test)` with its shrinkage, in 4-D (k-d tree path) and in
64-D with fewer points than a well-conditioned covariance needs (brute-force path; large
shrinkage).

Run once (pip install scikit-learn numpy) from the repository root:
    python3 tests/reference/knn_mahalanobis_reference.py > tests/fixtures/knn_mahalanobis_sklearn.json
"""
import json

import numpy as np
import sklearn
from sklearn.covariance import LedoitWolf
from sklearn.neighbors import NearestNeighbors

rng = np.random.default_rng(29)
cases = []
for dim, n_train, k in [(4, 300, 2), (64, 80, 5)]:
    mix = rng.normal(size=(dim, dim)) / np.sqrt(dim)
    train = rng.normal(size=(n_train, dim)) @ mix + 0.5
    test = np.vstack([rng.normal(size=(40, dim)) @ mix + 0.5,
                      rng.normal(size=(20, dim)) @ mix + 0.5 + rng.choice([-2.0, 2.0], size=(20, dim))])
    dist, _ = NearestNeighbors(n_neighbors=k).fit(train).kneighbors(test)
    lw = LedoitWolf().fit(train)
    cases.append({
        "dim": dim,
        "k": k,
        "train": train.tolist(),
        "test": test.tolist(),
        "knn_scores": dist.mean(axis=1).tolist(),
        "mahalanobis_scores": lw.mahalanobis(test).tolist(),
        "shrinkage": float(lw.shrinkage_),
    })
print(json.dumps({"sklearn_version": sklearn.__version__, "cases": cases}))
