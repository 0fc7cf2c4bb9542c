#!/usr/bin/env python3
"""Cross-checks mimlab's linear protocol with scikit-learn on exported features:

    go run ./cmd/sweep export --trial 1 --features train -o /tmp/f_train.npy
    go run ./cmd/sweep export --trial 1 --features test  -o /tmp/f_test.npy
    /usr/bin/python3 bench/sklearn_linear.py /tmp/f_train.npy /tmp/f_test.npy [l2]

Same protocol as eval.Linear: features standardised with the train split's mean and variance (eps 1e-6,
BatchNorm without affine), multinomial logistic regression by L-BFGS; mimlab's penalty 0.5*l2*|W|^2 on the
mean loss equals scikit-learn's C = 1 / (l2 * n_train). Prints the test top-1."""
import sys
import numpy as np
from sklearn.linear_model import LogisticRegression

tr, te = sys.argv[1], sys.argv[2]
l2 = float(sys.argv[3]) if len(sys.argv) > 3 else 1e-4
xtr, xte = np.load(tr).astype(np.float64), np.load(te).astype(np.float64)
ytr = np.load(tr.replace(".npy", "_labels.npy"))
yte = np.load(te.replace(".npy", "_labels.npy"))
mu, var = xtr.mean(0), xtr.var(0)
xtr, xte = (xtr - mu) / np.sqrt(var + 1e-6), (xte - mu) / np.sqrt(var + 1e-6)
clf = LogisticRegression(C=1.0 / (l2 * len(xtr)), max_iter=2000, tol=1e-6)
clf.fit(xtr, ytr)
print(f"sklearn LogisticRegression (C={clf.C:.4g}, lbfgs): test top-1 {clf.score(xte, yte):.4f}  "
      f"({xtr.shape[0]} train x {xtr.shape[1]}, {xte.shape[0]} test)")
