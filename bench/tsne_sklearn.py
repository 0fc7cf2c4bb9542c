#!/usr/bin/env python3
"""Writes the t-SNE benchmark input (2,000 points, 128 dimensions, 10 Gaussian clusters, seeded) to argv[1]
and times scikit-learn's TSNE (perplexity 30, PCA init, learning_rate auto, Barnes-Hut, 1,000 iterations)
on it, printing seconds and trustworthiness (k = 5).
Run: OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 bench/tsne_sklearn.py /tmp/tsne_in.npy"""
import sys, time
import numpy as np
from sklearn.manifold import TSNE, trustworthiness

rng = np.random.default_rng(0)
centres = rng.normal(0, 4, (10, 128))
x = (centres[np.arange(2000) % 10] + rng.normal(0, 1, (2000, 128))).astype(np.float32)
np.save(sys.argv[1], x)
t0 = time.perf_counter()
y = TSNE(perplexity=30, init="pca", learning_rate="auto", n_iter=1000, random_state=0, n_jobs=2).fit_transform(x)
sec = time.perf_counter() - t0
print(f"RESULT sklearn-tsne seconds={sec:.2f} trustworthiness={trustworthiness(x, y, n_neighbors=5):.4f} n=2000 d=128")
