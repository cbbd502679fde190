"""NumPy forward passes that the ops' `examples()` cite as test references.

Written with loops over output positions and taps, independently of the
lax calls in the ops' `apply`, in float64. `params` are a finite network's
parameters ({node id: {"w", "b"}}); the layer under test is node 1 unless
said otherwise.
"""
from __future__ import annotations

import math

import numpy as np

from .base import padding_amounts


def pads(n: int, k: int, s: int, padding: str) -> tuple[int, int, int]:
    """(lo, hi, out) of one axis, as lax.conv pads (circular pads like same)."""
    return padding_amounts(n, k, s, "same" if padding == "circular" else padding)


def _windowed(x, window, stride, padding, weight, out_channels):
    """sum over taps t of x[s p + t] @ weight(p, t) at every output position p, zero or circular padding."""
    p = [pads(n, k, s, padding) for n, k, s in zip(x.shape[1:-1], window, stride)]
    mode = "wrap" if padding == "circular" else "constant"
    xp = np.pad(x, [(0, 0)] + [(lo, hi) for lo, hi, _ in p] + [(0, 0)], mode=mode)
    out = np.zeros((x.shape[0],) + tuple(o for _, _, o in p) + (out_channels,))
    for q in np.ndindex(*out.shape[1:-1]):
        for t in np.ndindex(*window):
            src = tuple(s * qi + ti for s, qi, ti in zip(stride, q, t))
            out[(slice(None),) + q] += xp[(slice(None),) + src] @ weight(q, t)
    return out


def conv(x, w, stride, padding):
    """x (n, *S, c), w (*window, c, o): y[p] = sum over taps t of x[s p + t] @ w[t]."""
    return _windowed(x, w.shape[:x.ndim - 2], stride, padding, lambda q, t: w[t], w.shape[-1])


def conv_local(x, w, stride, padding):
    """Like `conv`, with weights w (*out positions, *window, c, o) of their own at every output position."""
    rank = x.ndim - 2
    return _windowed(x, w.shape[rank:2 * rank], stride, padding, lambda q, t: w[q + t], w.shape[-1])


def conv_transpose(x, w, stride, padding):
    """The transposed convolution, by scattering: input position i and tap t
    add x[i] @ w[t] to output position a + s i - t, with a the low padding of
    the dilated input (lax.conv_transpose's convention: y[p] = sum_t D[p + t] w[t]
    over the input dilated by s and padded by (a, b))."""
    from .conv_transpose import transpose_pads
    rank = x.ndim - 2
    window = w.shape[:rank]
    spatial = x.shape[1:-1]
    p = [transpose_pads(k, s, padding) for k, s in zip(window, stride)]
    outs = [s * (n - 1) + 1 + a + b - k + 1 for n, k, s, (a, b) in zip(spatial, window, stride, p)]
    out = np.zeros((x.shape[0],) + tuple(outs) + (w.shape[-1],))
    for i in np.ndindex(*spatial):
        for t in np.ndindex(*window):
            q = tuple(a + s * ii - ti for (a, _), s, ii, ti in zip(p, stride, i, t))
            if all(0 <= qi < o for qi, o in zip(q, outs)):
                out[(slice(None),) + q] += x[(slice(None),) + i] @ w[t]
    return out


def pool(x, window, stride, padding, mean: bool = True):
    """Sum (mean: average) over windows; zero padding counts."""
    p = [pads(n, k, s, padding) for n, k, s in zip(x.shape[1:-1], window, stride)]
    xp = np.pad(x, [(0, 0)] + [(lo, hi) for lo, hi, _ in p] + [(0, 0)])
    out = np.zeros((x.shape[0],) + tuple(o for _, _, o in p) + (x.shape[-1],))
    for q in np.ndindex(*out.shape[1:-1]):
        for t in np.ndindex(*window):
            out[(slice(None),) + q] += xp[(slice(None),) + tuple(s * qi + ti for s, qi, ti in zip(stride, q, t))]
    return out / math.prod(window) if mean else out


def weights(params, node_id: int, scale_w: float, scale_b: float):
    """(w, b) of a node as float64 arrays times the forward pass's scales (b = 0 without a bias)."""
    p = params[node_id]
    return (np.asarray(p["w"], np.float64) * scale_w,
            np.asarray(p["b"], np.float64) * scale_b if "b" in p else 0.0)


def after_dense(fn):
    """Reference of `dense width=5` (w_std=1, no bias) at node 1, then fn:
    activations need Gaussian pre-activations."""
    def ref(x, params, ntk):
        w, _ = weights(params, 1, 1 / math.sqrt(x.shape[-1]) if ntk else 1.0, 0.0)
        return fn(x @ w)
    return ref
