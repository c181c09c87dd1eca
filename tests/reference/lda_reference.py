"""Reference projections of scikit-learn's shrinkage LDA for tests/reduce.rs.

Run once (pip install scikit-learn numpy) from the repository root:
    python3 tests/reference/lda_reference.py > tests/fixtures/lda_sklearn.json
"""
import json

import numpy as np
import sklearn
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

rng = np.random.default_rng(11)
cases = []
# Three classes in 6 dimensions (two components), and a binary case in 10 dimensions with a
# constant feature and few samples of the second class, like MNIST's border pixels and rare
# anomalies (one component).
for name, sizes, d, constant in [("three_class", [60, 50, 40], 6, False),
                                  ("binary_rare", [200, 12], 10, True)]:
    xs, ys = [], []
    for c, n in enumerate(sizes):
        mean = rng.normal(0, 2, d)
        scale = rng.uniform(0.5, 1.5, d)
        xs.append(rng.normal(mean, scale, (n, d)))
        ys += [c] * n
    x = np.vstack(xs)
    if constant:
        x[:, 0] = 0.25
    y = np.array(ys)
    lda = LinearDiscriminantAnalysis(solver="eigen", shrinkage=0.1).fit(x, y)
    cases.append({"name": name, "x": x.tolist(), "y": y.tolist(),
                  "projection": lda.transform(x).tolist()})
print(json.dumps({"sklearn_version": sklearn.__version__, "shrinkage": 0.1, "cases": cases}))
