"""Reference scores of scikit-learn in 16 dimensions for tests/detectors.rs: LOF above 8
dimensions (where eidn searches neighbours by blocked brute force, not a k-d tree) and the
isolation forest's per-point score 2^(-E[h(x)] / c(256)), i.e. its mean path lengths, over
enough trees (4,000) that the forest's own randomness hardly moves them.

Run once (pip install scikit-learn numpy) from the repository root:
    python3 tests/reference/detectors_highdim_reference.py > tests/fixtures/detectors_highdim_sklearn.json
"""
import json

import numpy as np
import sklearn
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import LocalOutlierFactor

rng = np.random.default_rng(11)
dim = 16
# Normal points on a tilted, anisotropic Gaussian; anomalies shifted off it.
scale = np.linspace(0.3, 2.0, dim)
train = rng.normal(size=(600, dim)) * scale
test_normal = rng.normal(size=(100, dim)) * scale
test_anomalous = rng.normal(size=(50, dim)) * scale + rng.choice([-3.0, 3.0], size=(50, dim))
test = np.vstack([test_normal, test_anomalous])

lof = LocalOutlierFactor(n_neighbors=20, novelty=True).fit(train)
forest = IsolationForest(n_estimators=4000, max_samples=256, random_state=0).fit(train)

print(json.dumps({
    "sklearn_version": sklearn.__version__,
    "train": train.tolist(),
    "test": test.tolist(),
    "lof_scores": (-lof.score_samples(test)).tolist(),
    "iforest_scores": (-forest.score_samples(test)).tolist(),
}))
