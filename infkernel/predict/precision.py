"""What a float32 kernel's rounding does to a solve: an error model, a probe, and the verdict (issue 15, fault 2).

A float32 kernel is not exact to float32 rounding. Arc-cosine duals (ReLU and
its relatives, and the derivative kernels of every NTK) have an infinite slope
at correlations +-1: with c = 1 - d, arccos(c) ~ sqrt(2 d), so a rounding eps
of the correlation moves the kernel by up to ~sqrt(2 eps) of its scale, and
the error carries through the later layers. Measured against float64 on ReLU
nets of depth 3-10 (1-D grids of 15 and 200 points, random and near-duplicate
inputs in 10-D): NTK entries whose output correlation is near +-1 are off by
up to 6.6e-5 of sqrt(K_ii K_jj) (about 0.14 sqrt(2 eps)), up to 17 eps /
sqrt(1 - c^2) in terms of their own correlation c, and all other entries by
up to 5.5 eps. The model bounds entry (i, j) by

    e_ij = sqrt(K_ii K_jj) (8 eps + min(sqrt(2 eps), 32 eps / sqrt(1 - c_ij^2)))

(eps of the kernel's dtype): at least 1.4x each measured error, 7x at the cap.
For test rows K(x, X) without K(x, x) the scale of test point i is taken as
max_j K_ij^2 / K_jj (<= K_ii by Cauchy-Schwarz, equal at the nearest
training point).

The error reaches the predictions through the solve: to first order an error
E of the training kernel changes the dual coefficients alpha = G Y by
-G E alpha (G = (K + ridge I)^{-1}, or the gradient-flow filter G_t), and an
error E_x of the test rows adds E_x alpha. :func:`mean_error` draws errors of
the bounded size with random signs (rounding errors are of both signs; each
entry of E alpha, a sum of n such terms, drawn as a Gaussian of the same
variance, so that the draws share one pass over the kernel) and
returns the largest change of each prediction over a few draws: on the cases
above it overestimates the real float32-vs-float64 difference by 15x to
1000x, never under. Predictions whose estimated error exceeds half the
targets' root mean square are refused (:class:`KernelPrecisionError`); above
1e-3 of it they come with a :class:`PrecisionWarning` that names the estimate.
Kernels in float64 are taken as exact to their rounding (the singular-kernel
guard of :class:`~infkernel.predict.Eigh`).
"""
from __future__ import annotations

import functools
import warnings
from typing import Callable

import numpy as np

from ..errors import SpecError
from .checks import CHUNK, EPS32, SingularKernelError
from .rows import block, diagonal, product, row_blocks

FLOOR, SLOPE = 8.0, 32.0  # the model's constants (module docstring)
REFUSE, WARN = 0.5, 1e-3  # estimated error relative to the targets' RMS
PROBES = 3
GROWTH = 0.5  # exponent of n in the growth of the estimate (grown); measured 0.06-0.24


class KernelPrecisionError(SingularKernelError):
    """The kernel's own rounding error (float32) makes the requested solve meaningless."""


class PrecisionWarning(UserWarning):
    """A result computed from float32 kernels is uncertain by the amount the message names."""


def imprecise(k) -> bool:
    """Whether `k` is stored in a precision as coarse as float32 (these get the error model)."""
    dtype = np.asarray(k).dtype if not hasattr(k, "dtype") else k.dtype
    return np.issubdtype(dtype, np.floating) and float(np.finfo(dtype).eps) >= EPS32


def entry_errors(block: np.ndarray, d_rows: np.ndarray, d_cols: np.ndarray, eps: float) -> np.ndarray:
    """The bound e_ij of the module docstring for a block of a kernel, given the diagonals of its rows and columns."""
    scale = np.sqrt(np.maximum(np.outer(d_rows, d_cols), 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        c = np.where(scale > 0, np.abs(block) / scale, 0.0)
    gap = np.maximum(1.0 - np.minimum(c, 1.0) ** 2, 1e-300)
    return scale * (FLOOR * eps + np.minimum(np.sqrt(2 * eps), SLOPE * eps / np.sqrt(gap)))


def diagonal_of_test_rows(k_test_train: np.ndarray, d_train: np.ndarray) -> np.ndarray:
    """max_j K_ij^2 / K_jj: a lower bound of K(x_i, x_i), exact at a training point."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(d_train > 0, np.asarray(k_test_train, dtype=np.float64) ** 2 / d_train, 0.0)
    return np.max(ratio, axis=1, initial=0.0)


@functools.lru_cache(maxsize=None)
def _squared_bound_product():
    """A jitted (block, d_rows, d_cols, vec2, eps) -> (e ** 2) @ vec2, e the entrywise bound, in float32.

    One fused pass over the block instead of a dozen numpy passes: the bound is
    an estimate with a wide margin, so float32 is ample for it.
    """
    import jax
    import jax.numpy as jnp

    def run(rows, d_rows, d_cols, vec2, eps):
        s2 = jnp.maximum(d_rows[:, None] * d_cols[None, :], 0.0)
        c2 = jnp.where(s2 > 0, rows * rows / jnp.where(s2 > 0, s2, 1.0), 0.0)
        gap = jnp.maximum(1.0 - jnp.minimum(c2, 1.0), 1e-30)
        f = FLOOR * eps + jnp.minimum(jnp.sqrt(2 * eps), SLOPE * eps / jnp.sqrt(gap))
        return (s2 * f * f) @ vec2

    return jax.jit(run)


def probe_scale(k, d_rows: np.ndarray, d_cols: np.ndarray, vec: np.ndarray, eps: float) -> np.ndarray:
    """sqrt(sum_j e_ij^2 vec_jc^2) (rows of k, columns of vec): the standard deviation of (E' vec)_ic
    for E' of independent entries +-e_ij with random signs. One pass over k by row blocks."""
    run = _squared_bound_product()
    f32 = lambda a: np.asarray(a, dtype=np.float32)  # noqa: E731
    vec2, dc, e32 = f32(np.square(vec)), f32(d_cols), np.float32(eps)
    out = np.empty((k.shape[0], vec.shape[1]))
    for lo in range(0, k.shape[0], CHUNK):
        rows = f32(k[lo : lo + CHUNK])
        if not np.all(np.isfinite(rows)):
            raise SpecError(f"the kernel has NaN or infinite values in rows {lo}..{lo + len(rows) - 1}")
        out[lo : lo + CHUNK] = np.asarray(run(rows, f32(d_rows[lo : lo + CHUNK]), dc, vec2, e32))
    return np.sqrt(np.maximum(out, 0.0))


def probe(k, d_rows: np.ndarray, d_cols: np.ndarray, vec: np.ndarray, rng, eps: float) -> np.ndarray:
    """E' @ vec for a random error E' of entries +-e_ij with random signs, over row blocks of k.

    Each entry of E' vec is a sum of n terms of random sign; it is drawn as a
    Gaussian of the same variance (central limit), so that many probes share one
    pass over k (:func:`probe_scale`).
    """
    return probe_scale(k, d_rows, d_cols, vec, eps) * rng.standard_normal((k.shape[0], vec.shape[1]))


def mean_error(
    k_train, k_test_train, alpha: np.ndarray, apply_g: Callable[[np.ndarray], np.ndarray], seed: int = 0
) -> np.ndarray:
    """Estimated error (m, k) of the test means K(x, X) alpha caused by the kernels' rounding.

    k_train (n, n) and k_test_train (m, n) as given (float32); alpha (n, k) the
    dual coefficients; apply_g(v) applies the solve's G to v (n, k). Two passes
    over each kernel (its diagonal bound, then the probes' scale), and per probe
    one apply_g and one product with k_test_train.
    """
    k_train, k_test_train = (a if hasattr(a, "shape") else np.asarray(a) for a in (k_train, k_test_train))
    eps = max(EPS32, float(np.finfo(k_train.dtype).eps))
    d = diagonal(k_train)
    dx = np.concatenate([diagonal_of_test_rows(block(k_test_train, lo, hi), d)
                         for lo, hi in row_blocks(k_test_train.shape[0])])
    rng = np.random.default_rng(seed)
    sd_train, sd_test = probe_scale(k_train, d, d, alpha, eps), probe_scale(k_test_train, dx, d, alpha, eps)
    worst = np.zeros((k_test_train.shape[0], alpha.shape[1]))
    for _ in range(PROBES):
        d_alpha = apply_g(sd_train * rng.standard_normal(sd_train.shape))
        change = sd_test * rng.standard_normal(sd_test.shape) - product(k_test_train, d_alpha)
        worst = np.maximum(worst, np.abs(change))
    return worst


def dual_error(k_train, alpha: np.ndarray, apply_g: Callable[[np.ndarray], np.ndarray], seed: int = 0) -> float:
    """Estimated relative error ||G E alpha|| / ||alpha|| of the dual coefficients (largest over the probes)."""
    eps = max(EPS32, float(np.finfo(k_train.dtype).eps))
    d = diagonal(k_train)
    rng = np.random.default_rng(seed)
    size = max(float(np.linalg.norm(alpha)), np.finfo(np.float64).tiny)
    sd = probe_scale(k_train, d, d, alpha, eps)
    return max(float(np.linalg.norm(apply_g(sd * rng.standard_normal(sd.shape)))) / size for _ in range(PROBES))


def _rms(y) -> float:
    return float(np.sqrt(np.mean(np.square(y)))) if np.size(y) else 0.0


def refused(worst, y) -> np.ndarray:
    """Whether an estimated error (scalar or per ridge) is refused: above REFUSE times the targets' RMS.

    The one criterion of ridge selection (which excludes such ridges before
    choosing) and of the final check (:func:`judge`). nan (not estimated) is
    not refused.
    """
    rms = _rms(y)
    return np.asarray(worst) > REFUSE * (rms if rms > 0 else 1.0)


def grown(worst, n_final: int, n_selection: int):
    """An error estimated on `n_selection` training examples, grown to `n_final` by (n_final / n_selection)^GROWTH.

    The estimate of :func:`mean_error` grows with n at a fixed ridge (more
    rounded entries enter each prediction): measured on float32 ReLU NNGPs of
    Fashion-MNIST (depth 3; n = 375 .. 3,000, ridges 1e-5 .. 1e-3 of the mean
    diagonal) by (n ratio)^0.06 to ^0.24 from 375 to 3,000 examples (^0.63
    between two neighbouring subsamples at ridge 1e-3); GROWTH = 0.5 leaves a margin.
    Subsamples can miss what the whole set has (near-duplicate pairs), so the
    final check stays: :func:`~infkernel.predict.kernel_regression` then takes
    the next candidate ridge instead of failing.
    Ridge selection on a subsample judges its candidates by the grown
    estimate, so that the final check on all n examples agrees with it.
    """
    return np.asarray(worst) * (max(n_final, n_selection) / max(n_selection, 1)) ** GROWTH


def judge(error: np.ndarray, y: np.ndarray, what: str, ridge: float) -> None:
    """Refuse (KernelPrecisionError) or warn (PrecisionWarning) by the estimated error against the targets' RMS."""
    worst = float(np.max(error, initial=0.0))
    rms = _rms(y)
    scale = rms if rms > 0 else 1.0
    said = (
        f"the float32 kernels' rounding (up to ~{np.sqrt(2 * EPS32):.1g} of their scale where inputs correlate "
        f"near +-1) moves the {what} by up to {worst:.3g} (estimated), against targets of RMS {rms:.3g}"
    )
    if refused(worst, y):
        raise KernelPrecisionError(
            said, hint=f"compute the kernels in float64 (dtype='float64'), or use a ridge well above {ridge:.3g}"
        )
    if worst > WARN * scale:
        warnings.warn(PrecisionWarning(said + "; float64 kernels give exact results"), stacklevel=3)


def require_nonnegative(var: np.ndarray, scale: float, n: int, imprecise_kernels: bool) -> np.ndarray:
    """Variances with rounding-level negatives (>= -n eps64 scale) set to 0; clearly negative ones raise."""
    tol = max(n, 1) * float(np.finfo(np.float64).eps) * max(scale, 0.0)
    low = float(np.min(var, initial=0.0))
    if low < -tol:
        cause = (
            "the float32 kernels' rounding" if imprecise_kernels else "a kernel that is not positive semi-definite"
        )
        raise KernelPrecisionError(
            f"posterior variance {low:.3g} < 0 (prior scale {scale:.3g}): {cause} exceeds what the solve can absorb",
            hint="compute the kernels in float64, or use a larger ridge",
        )
    return np.maximum(var, 0.0)
