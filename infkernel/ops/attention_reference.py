"""A NumPy forward pass of self-attention, the test reference of `Attention.examples()`.

Loops over examples and heads, written from the formulas of
`infkernel.ops.attention_rules` (its docstring), not from its einsums; float64.
"""
from __future__ import annotations

import math

import numpy as np


def attention(x, p: dict, mechanism: str, scaling: str, qk: float, ov: float, b_std: float):
    """x (n, *S, C); p the layer's params {"w_k", ["w_q"], "w_v", "w_o", ["b"]} -> (n, *S, C_out)."""
    n, c = x.shape[0], x.shape[-1]
    flat = x.reshape(n, -1, c)
    out = []
    for a in range(n):
        heads = []
        for h in range(p["w_k"].shape[0]):
            k = flat[a] @ p["w_k"][h] / math.sqrt(c)
            q = k if "w_q" not in p else flat[a] @ p["w_q"][h] / math.sqrt(c)
            d = k.shape[1]
            g = qk * q @ k.T / (d if scaling == "linear" else math.sqrt(d))
            if mechanism == "softmax":
                g = np.exp(g - g.max(1, keepdims=True))
                g = g / g.sum(1, keepdims=True)
            elif mechanism == "relu":
                g = np.maximum(g, 0)
            elif mechanism == "abs":
                g = np.abs(g)
            heads.append(g @ (flat[a] @ p["w_v"][h] / math.sqrt(c)))
        cat = np.concatenate(heads, axis=1)
        out.append(ov * cat @ p["w_o"] / math.sqrt(cat.shape[1]) + (b_std * p["b"] if "b" in p else 0))
    return np.stack(out).reshape(x.shape[:-1] + (-1,))
