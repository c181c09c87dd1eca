"""Reference scores of scikit-learn's detectors for tests/detectors.rs.

Run once (pip install scikit-learn numpy) from the repository root:
    python3 tests/reference/detectors_reference.py > tests/fixtures/detectors_sklearn.json
The 2-D data is generated here with a fixed seed and stored beside the numbers.
"""
import json

import numpy as np
import sklearn
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score
from sklearn.mixture import GaussianMixture
from sklearn.neighbors import LocalOutlierFactor
from sklearn.svm import OneClassSVM

rng = np.random.default_rng(7)


def normal(n):
    # Two elongated clusters: something for the GMM to choose components on.
    a = rng.normal([0.0, 0.0], [1.0, 0.3], size=(n // 2, 2))
    b = rng.normal([3.0, 2.0], [0.5, 0.8], size=(n - n // 2, 2))
    return np.vstack([a, b])


train = normal(500)
test_normal = normal(300)
test_anomalous = rng.uniform([-5.0, -5.0], [8.0, 7.0], size=(100, 2))
test = np.vstack([test_normal, test_anomalous])
labels = np.r_[np.zeros(300, bool), np.ones(100, bool)]

iforest_aucs = []
for seed in range(5):
    f = IsolationForest(n_estimators=100, max_samples=256, random_state=seed).fit(train)
    iforest_aucs.append(roc_auc_score(labels, -f.score_samples(test)))

svm = OneClassSVM(nu=0.1, gamma="scale").fit(train)
svm_auc = roc_auc_score(labels, -svm.decision_function(test))

best = None
for k in range(1, 6):
    g = GaussianMixture(n_components=k, covariance_type="full", random_state=0).fit(train)
    bic = g.bic(train)
    if best is None or bic < best[0]:
        best = (bic, k, g)
gmm_auc = roc_auc_score(labels, -best[2].score_samples(test))

lof = LocalOutlierFactor(n_neighbors=20, novelty=True).fit(train)
lof_scores = -lof.score_samples(test)

print(json.dumps({
    "sklearn_version": sklearn.__version__,
    "train": train.tolist(),
    "test": test.tolist(),
    "labels": labels.tolist(),
    "iforest_auc_per_seed": iforest_aucs,
    "ocsvm_auc": svm_auc,
    "gmm_auc": gmm_auc,
    "gmm_components": best[1],
    "lof_auc": roc_auc_score(labels, lof_scores),
    "lof_scores": lof_scores.tolist(),
    "origin_auc": roc_auc_score(labels, np.linalg.norm(test, axis=1)),
}))
