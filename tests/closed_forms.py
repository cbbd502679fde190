"""Closed-form kernels in plain numpy, independent of infkernel's compiler: oracles for tests.

Fully connected ReLU networks in the NTK parameterization (Jacot et al. 2018; Arora et al. 2019,
eqs. 3-5 with the arc-cosine kernels of Cho & Saul 2009):
    Sigma_0 = x . x' / d
    dense:  Sigma' = w^2 Sigma + b^2,  Theta' = Sigma' + w^2 Theta
    relu:   Sigma' = sqrt(q q') (sin t + (pi - t) cos t) / (2 pi),  Theta' = Theta (pi - t) / (2 pi)
with cos t = Sigma / sqrt(q q'), q and q' the variances of the two examples.
"""
from __future__ import annotations

import numpy as np


def relu_fc_kernels(x1, x2=None, depth=2, w_std=np.sqrt(2), b_std=0.1, w_out=1.0, b_out=0.1):
    """(nngp, ntk) of `depth` x (dense w_std b_std, relu), then dense w_out b_out; float64, (n1, n2)."""
    x1 = np.asarray(x1, np.float64).reshape(len(x1), -1)
    symmetric = x2 is None
    x2 = x1 if symmetric else np.asarray(x2, np.float64).reshape(len(x2), -1)
    d = x1.shape[1]
    sigma = x1 @ x2.T / d
    q1, q2 = np.sum(x1 * x1, 1) / d, np.sum(x2 * x2, 1) / d
    theta = np.zeros_like(sigma)

    def dense(sigma, theta, q1, q2, w, b):
        sigma = w**2 * sigma + b**2
        return sigma, sigma + w**2 * theta, w**2 * q1 + b**2, w**2 * q2 + b**2

    for _ in range(depth):
        sigma, theta, q1, q2 = dense(sigma, theta, q1, q2, w_std, b_std)
        norm = np.sqrt(np.outer(q1, q2))
        t = np.arccos(np.clip(sigma / norm, -1.0, 1.0))
        if symmetric:  # an example with itself: angle 0 exactly (arccos of a rounded 1 is off by 1e-8)
            np.fill_diagonal(t, 0.0)
        sigma = norm * (np.sin(t) + (np.pi - t) * np.cos(t)) / (2 * np.pi)
        theta = theta * (np.pi - t) / (2 * np.pi)
        q1, q2 = q1 / 2, q2 / 2  # E[relu(u)^2] = q / 2
    sigma, theta, _, _ = dense(sigma, theta, q1, q2, w_out, b_out)
    return sigma, theta
