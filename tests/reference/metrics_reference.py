"""Reference ROC AUC / average precision from scikit-learn for tests/metrics.rs.

Run once (pip install scikit-learn numpy) from the repository root:
    python3 tests/reference/metrics_reference.py > tests/fixtures/metrics_sklearn.json
The vectors are generated here with a fixed seed and stored in the fixture beside the
numbers, so the Rust test needs no Python.
"""
import json

import numpy as np
import sklearn
from sklearn.metrics import average_precision_score, roc_auc_score

rng = np.random.default_rng(20261129)
cases = []
# Continuous scores with overlap, rounded scores with many ties, a rare-anomaly case, and
# scores of wildly different magnitudes.
for name, n, pos_frac, rounding, scale in [
    ("overlap", 500, 0.3, None, 1.0),
    ("ties", 400, 0.5, 1, 1.0),
    ("rare", 2000, 0.01, None, 1.0),
    ("coarse_ties_rare", 1000, 0.05, 0, 3.0),
    ("large_scale", 300, 0.4, None, 1e6),
]:
    labels = rng.random(n) < pos_frac
    labels[0], labels[1] = True, False  # both classes present
    scores = rng.normal(0.0, 1.0, n) + 1.2 * labels
    scores = scores * scale
    if rounding is not None:
        scores = np.round(scores, rounding)
    cases.append(
        {
            "name": name,
            "scores": [float(s) for s in scores],
            "labels": [bool(b) for b in labels],
            "roc_auc": float(roc_auc_score(labels, scores)),
            "average_precision": float(average_precision_score(labels, scores)),
        }
    )
print(json.dumps({"sklearn_version": sklearn.__version__, "cases": cases}))
