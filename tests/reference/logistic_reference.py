"""scikit-learn's class-balanced logistic regression (C = 1) on the tiny case that
src/reduce/logistic.rs's unit test solves with its Newton method; prints coef and intercept.

    pip install scikit-learn numpy; python3 tests/reference/logistic_reference.py
"""
import numpy as np
import sklearn
from sklearn.linear_model import LogisticRegression

x = np.array([[0.0], [1.0], [2.0], [3.0], [4.0]])
y = np.array([0, 0, 0, 1, 1])
m = LogisticRegression(class_weight="balanced", C=1.0, tol=1e-12, max_iter=10000).fit(x, y)
print(f"scikit-learn {sklearn.__version__}: coef {m.coef_[0][0]:.6f}, intercept {m.intercept_[0]:.6f}")
