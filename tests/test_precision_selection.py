"""Ridge selection and the final float32 precision check share one criterion (issue 17): a ridge the check
would refuse is excluded before selection, and a fit whose ridge was selected on fewer examples does not
fail after its solve. Oracle: the float64 kernel of the same net, whose selection picks the smallest ridge."""
from __future__ import annotations

import functools
import re
import warnings

import numpy as np

import infkernel as ik
from infkernel import predict as P
from infkernel.predict.holdout import holdout_fit
from infkernel.predict.precision import refused


@functools.lru_cache(maxsize=None)
def near_duplicates():
    """150 pairs of near-duplicate inputs (1e-4 apart) in 10-D: float32 NTKs are too coarse for small ridges.

    Targets K64 w (in the kernel's span, noise-free): in float64 the smallest ridge predicts best.
    """
    kfn = ik.compile("input 10\n" + "dense w_std=1.5 b_std=0.05\nrelu\n" * 2 + "dense w_std=1.5 b_std=0.05\n")
    rng = np.random.default_rng(0)
    x = np.repeat(rng.normal(size=(150, 10)), 2, axis=0) + 1e-4 * rng.normal(size=(300, 10))
    xt = rng.normal(size=(40, 10))
    k32, kx32, k64 = kfn(x, dtype="float32").ntk, kfn(xt, x, dtype="float32").ntk, kfn(x, dtype="float64").ntk
    y = k64 @ rng.normal(size=300)
    return k32, kx32, k64, y / np.sqrt(np.mean(y**2))


def test_refused_ridges_are_never_selected():
    k32, _, k64, y = near_duplicates()
    h32 = holdout_fit(k32, y, fraction=0.2, solver="eigh")
    out = refused(h32.precision, y)
    assert out[:2].all() and not out[-5:].any()  # the smallest ridges refused, the large ones not
    assert np.all(np.isinf(h32.selection.errors[out]))
    assert not refused(h32.precision[h32.selection.ridges == h32.selection.ridge], y).any()
    h64 = holdout_fit(k64, y, fraction=0.2, solver="eigh")
    assert np.isnan(h64.precision).all()  # float64: no exclusion
    assert out[list(h64.selection.ridges).index(h64.selection.ridge)]  # float64 picks one float32 cannot afford


def test_a_fit_with_a_selected_ridge_does_not_fail_after_its_solve():
    """Leave-one-out on 100 of the 300 examples cannot see the near-duplicate pairs (they rarely both land in
    the subsample) and picks a ridge the check on all 300 refuses: the fit takes the next candidate instead of
    failing, and says so."""
    k32, kx32, k64, y = near_duplicates()
    said = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", P.PrecisionWarning)
        sub = P.kernel_regression(k32, y, kx32, solver="cholesky", cv_size=100, progress=said.append)
        held = P.kernel_regression(k32, y, kx32, solver="cholesky", validation=0.2, progress=said.append)
        in_place = np.array(k32)  # factored inside this array: K comes back from its upper triangle to refactor
        kept = P.kernel_regression(in_place, y, kx32, solver="cholesky", cv_size=100, overwrite=True)
    np.testing.assert_allclose(kept.mean, sub.mean, rtol=0, atol=1e-8)
    assert kept.ridge == sub.ridge
    first = P.select_ridge_subsample(k32, y, size=100).ridge
    # refused by the precision check, or by the factorization breaking down first (which of the two
    # depends on the kernel's last bits): either way the next candidate is taken and said
    refusal = re.compile(r"ridge \S+ refused by the (float32 precision check|solve) on all 300")
    assert sub.ridge > first and refusal.search(sub.details)
    assert any(refusal.search(line) for line in said)
    for fit in (sub, held):
        want = P.nngp_posterior(k64, y, kx32.astype(np.float64), ridge=fit.ridge).mean  # float64 at that ridge
        assert np.max(np.abs(fit.mean - want)) < 0.5  # the refusal limit: half the targets' RMS (1)


def test_a_given_ridge_is_judged_before_refinement():
    """A given ridge the check refuses raises right after the factorization (or the factorization breaks
    down first; which of the two depends on the kernel's last bits): no refinement step is run."""
    k32, kx32, _, y = near_duplicates()
    said = []
    ridge = float(np.mean(np.diag(k32))) * 1e-6
    try:
        P.kernel_regression(k32, y, kx32, solver="cholesky", ridge=ridge, progress=said.append)
    except P.SingularKernelError:  # KernelPrecisionError is one
        pass
    else:
        raise AssertionError("a refused ridge was accepted")
    assert not any("refinement step" in line for line in said), said


def test_auto_solver_is_named_auto_in_the_ridge_selection_line():
    """fit --validation used to print 'solver eigh (requested)' when auto had chosen it."""
    _, _, k64, y = near_duplicates()
    said = []
    P.kernel_regression(k64, y, k64[:5], solver="auto", validation=0.2, progress=said.append)
    line = next(s for s in said if s.startswith("ridge selection"))
    assert "solver eigh (auto: n = 240" in line and "requested" not in " ".join(said)
    said.clear()
    P.kernel_regression(k64, y, k64[:5], solver="eigh", validation=0.2, progress=said.append)
    assert "solver eigh (requested)" in next(s for s in said if s.startswith("ridge selection"))


def test_a_ridge_held_out_for_the_float64_solver_respects_its_floor():
    """With the eigh route (n <= 5000) a float32 kernel's final solve refuses ridges below n eps32 times its
    largest eigenvalue: selection on the 80 % fit part excludes them at the final n, and the fit goes through."""
    k32, kx32, k64, y = near_duplicates()
    said = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", P.PrecisionWarning)
        fit = P.kernel_regression(k32, y, kx32, validation=0.2, progress=said.append)
    assert fit.solver == "eigh" and "refused" not in fit.details, fit.details
    w = np.linalg.eigvalsh(k32.astype(np.float64))
    assert fit.ridge > 300 * np.finfo(np.float32).eps * w[-1]
