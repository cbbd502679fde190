"""Random projections and sketches that the feature-map rules are built from.

Every function here is unbiased for the inner product it approximates, for
fixed inputs, over the draw of its random matrices:

- `project`: a Gaussian random projection (Johnson-Lindenstrauss),
  E[<a G, a' G>] / m = a.a' with G (d, m) standard normal.
- `conv_project`: the same for every patch of a feature image, the taps
  independent: E[<P(a)_i, P(a')_j>] = mean_t a_(si+t) . a'_(sj+t), which is the
  conv kernel rule (Arora et al. 2019, Eq. (7)) on features. It is a
  convolution with random weights.
- `product_sketch`: a sketch of the tensor product a (x) b, as in TensorSRHT
  (Ahle et al. 2020, "Oblivious sketching of high-degree polynomial kernels";
  Zandieh et al. 2021, Sec. 3.1) with Rademacher instead of subsampled
  Hadamard rows: s(a, b) = (a R) * b / sqrt(m) with R (d, m) random signs and
  b already m random features; E[<s(a, b), s(a', b')>] = (a.a')(E[b.b']).
- `tensor_sketch`: the same for two arbitrary vectors, both projected.
- `poly_sketch`: degree-n tensor powers by products of n independent sign
  projections (the tensor random projection of Rakhshan & Rabusseau 2020; a
  flat PolySketch), E[<S(a), S(a')>] = (a.a')^n.

Draws come from `Draws`, which keys each matrix by (node, name) so that the
same map is reproduced from the same seed and each node's draws are independent.
"""
from __future__ import annotations

import math
import zlib

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..ops.base import padding_amounts

HIGHEST = lax.Precision.HIGHEST


class Draws:
    """Random matrices of one feature map, keyed by (node, name).

    Recording (`params` None): each call notes the shape and returns zeros,
    so that a trace of the map (`jax.eval_shape`) lists every matrix it
    needs; `sample(seed)` then draws them, each from its own generator
    seeded by (seed, node, crc32(name)), independent across nodes.
    Replaying: each call returns the drawn matrix, so a jitted map takes its
    random matrices as an argument and is traced once."""

    def __init__(self, dtype, params: dict | None = None):
        self.dtype = dtype
        self.params = params
        self.wanted: dict = {}
        self.node = 0

    def _get(self, name: str, shape: tuple[int, ...], kind: str):
        full = f"{self.node}/{name}"
        if self.params is not None:
            return self.params[full]
        if full in self.wanted:
            raise AssertionError(f"draw {full} taken twice")
        self.wanted[full] = (self.node, name, shape, kind)
        return jnp.zeros(shape, self.dtype)

    def sample(self, seed: int, copy: int = 0) -> dict:
        """Draw every recorded matrix (NumPy's generator: no compilation per shape);
        `copy` > 0 draws an independent copy for the same seed (`FeatureMap` copies)."""
        out = {}
        for full, (node, name, shape, kind) in self.wanted.items():
            rng = np.random.default_rng([seed, node, zlib.crc32(name.encode())] + ([copy] if copy else []))
            if kind == "normal":
                a = rng.standard_normal(shape)
            else:
                a = rng.integers(0, 2, shape) * 2.0 - 1.0
            out[full] = jnp.asarray(a, self.dtype)
        return out

    def normal(self, name: str, shape):
        return self._get(name, tuple(shape), "normal")

    def signs(self, name: str, shape):
        return self._get(name, tuple(shape), "signs")


def project(a, draws: Draws, name: str, m: int):
    """a (..., d) -> (..., m): a G / sqrt(m), G (d, m) standard normal."""
    g = draws.normal(name, (a.shape[-1], m))
    return jnp.matmul(a, g, precision=HIGHEST) / math.sqrt(m)


def pad_spatial(a, window, strides, padding: str):
    """Zero (or, for circular, wrapped) padding of the spatial axes of a (n, *S, d)
    as lax.conv's SAME padding places it; `valid` leaves a unchanged."""
    if padding == "valid":
        return a
    pads = [padding_amounts(n, k, s, "same")[:2] for n, k, s in zip(a.shape[1:-1], window, strides)]
    return jnp.pad(a, [(0, 0), *pads, (0, 0)], mode="wrap" if padding == "circular" else "constant")


def _dims(rank: int):
    spatial = "HWD"[:rank] if rank <= 3 else None
    if spatial is None:
        raise NotImplementedError("feature maps of convolutions support up to 3 spatial axes")
    return (f"N{spatial}C", f"{spatial}IO", f"N{spatial}C")


def patches(a, window, strides, padding: str):
    """The exact patch features: (n, *S', |T| d) with <p_i, p'_j> = sum_t a_(si+t).a'_(sj+t)."""
    a = pad_spatial(a, window, strides, padding)
    rank = len(window)
    return lax.conv_general_dilated_patches(a, window, strides, "VALID", dimension_numbers=_dims(rank),
                                            precision=HIGHEST)


def conv_project(a, draws: Draws, name: str, m: int, window, strides, padding: str):
    """a (n, *S, d) -> (n, *S', m): sum_t a_(si+t) G_t / sqrt(|T| m), G_t independent
    (d, m) standard normal, so that the expected inner product is the window
    mean of the incoming inner products (zero padding counted, circular wrapped)."""
    taps = math.prod(window)
    g = draws.normal(name, (*window, a.shape[-1], m))
    a = pad_spatial(a, window, strides, padding)
    y = lax.conv_general_dilated(a, g, strides, "VALID", dimension_numbers=_dims(len(window)), precision=HIGHEST)
    return y / math.sqrt(taps * m)


def product_sketch(a, b, draws: Draws, name: str):
    """Sketch of a (x) b: (a R) * b / sqrt(m), R (d_a, m) random signs, b (..., m)
    whose mean coordinate product, (1/m) sum_j b_j b'_j, is what multiplies a.a'
    (raw random features f'(u_j), not divided by sqrt(m))."""
    m = b.shape[-1]
    r = draws.signs(name, (a.shape[-1], m))
    return jnp.matmul(a, r, precision=HIGHEST) * b / math.sqrt(m)


def tensor_sketch(a, b, draws: Draws, name: str, m: int):
    """Sketch of a (x) b for any two feature vectors: (a R1) * (b R2) / sqrt(m), R1,
    R2 independent random signs (TensorSRHT with dense sign matrices), so that
    E[<s(a, b), s(a', b')>] = (a.a')(b.b') however b's weight is spread."""
    r1 = draws.signs(f"{name}/a", (a.shape[-1], m))
    r2 = draws.signs(f"{name}/b", (b.shape[-1], m))
    return jnp.matmul(a, r1, precision=HIGHEST) * jnp.matmul(b, r2, precision=HIGHEST) / math.sqrt(m)


def poly_sketch(a, degree: int, draws: Draws, name: str, m: int):
    """(..., d) -> (..., m) with E[<S(a), S(a')>] = (a.a')^degree; degree 0 gives
    ones (..., 1). Variance grows like 3^degree / m for Gaussian-like inputs
    (Ahle et al. 2020, Lemma 4), so keep degrees small."""
    if degree == 0:
        return jnp.ones(a.shape[:-1] + (1,), a.dtype)
    out = None
    for k in range(degree):
        r = draws.signs(f"{name}/{k}", (a.shape[-1], m))
        factor = jnp.matmul(a, r, precision=HIGHEST)
        out = factor if out is None else out * factor
    return out / math.sqrt(m)
