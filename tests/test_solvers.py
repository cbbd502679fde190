"""Solvers beyond eigh (issue 17): the blocked float32 Cholesky with float64 refinement and
preconditioned CG against the float64 direct solve (numpy/scipy), on an ill-conditioned ReLU NTK
(closed form, Jacot et al. 2018 / Cho & Saul 2009 arc-cosine kernels), from RAM, memmap and Zarr."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg as sla
from sklearn.kernel_ridge import KernelRidge

from infkernel import predict as P
from infkernel.errors import SpecError


def relu_ntk(x1, x2):
    """NTK of a one-hidden-layer ReLU net (NTK parameterization, no readout bias): arc-cosine kernels."""
    n1, n2 = np.linalg.norm(x1, axis=1), np.linalg.norm(x2, axis=1)
    dot = x1 @ x2.T
    cos = np.clip(dot / np.outer(n1, n2), -1.0, 1.0)
    theta = np.arccos(cos)
    nngp = np.outer(n1, n2) * (np.sin(theta) + (np.pi - theta) * cos) / (2 * np.pi)
    return nngp + dot * (np.pi - theta) / (2 * np.pi)


def problem(n=300, m=20, seed=0):
    """1-D inputs with a bias coordinate on a dense grid: correlations near 1, a fast-decaying spectrum."""
    rng = np.random.default_rng(seed)
    s = np.sort(rng.uniform(-3, 3, size=n + m))
    x = np.stack([s, np.ones_like(s)], axis=1)
    train, test = x[:n], x[n:]
    y = np.stack([np.sin(2 * train[:, 0]), np.cos(train[:, 0])], axis=1)
    return relu_ntk(train, train), relu_ntk(test, train), y


def dense_solve(k, y, ridge):
    return sla.solve(k + ridge * np.eye(len(k)), y, assume_a="pos")


def close(got, want, tol=1e-6):
    assert np.max(np.abs(got - want)) <= tol * np.max(np.abs(want)), np.max(np.abs(got - want)) / np.max(np.abs(want))


def test_the_kernel_is_ill_conditioned():
    k, _, _ = problem()
    w = np.linalg.eigvalsh(k)
    assert w[-1] / (w[0] + 1e-4 * np.mean(np.diag(k))) > 1e5


@pytest.mark.parametrize("block", [128, 1024])
def test_blocked_cholesky_factor_and_refined_solve(block):
    k, _, y = problem()
    ridge = 1e-3 * np.mean(np.diag(k))
    steps = []
    c = P.BlockedCholesky(k, ridge, block=block, say=steps.append)
    ref = np.linalg.cholesky(k.astype(np.float32).astype(np.float64) + ridge * np.eye(len(k)))
    assert np.max(np.abs(np.tril(c.a) - ref)) < 1e-3 * np.max(np.abs(ref))  # a float32 factor
    np.testing.assert_array_equal(np.triu(c.a, 1), np.triu(k.astype(np.float32), 1))  # K kept above
    x = c.solve(y)
    close(x, dense_solve(k, y, ridge), 1e-8)
    assert len(c.history) >= 2 and c.history[-1] <= 1e-10  # refinement did the work
    assert any("refinement step" in s for s in steps) and any("block column" in s for s in steps)


def test_refinement_that_cannot_converge_raises():
    n = 200
    q = np.linalg.qr(np.random.default_rng(1).normal(size=(n, n)))[0]
    k = (q * np.geomspace(1e-9, 1.0, n)) @ q.T  # cond 1e9 > 1 / eps32
    with pytest.raises((P.NotConvergedError, P.SingularKernelError), match="float32"):
        P.BlockedCholesky(k, 0.0, block=64).solve(np.ones((n, 1)), max_steps=10)


@pytest.mark.parametrize("rel", [1e-2, 1e-4])
def test_cg_matches_the_direct_solve_and_the_preconditioner_cuts_iterations(rel):
    k, _, y = problem()
    ridge = rel * np.mean(np.diag(k))
    want = dense_solve(k, y, ridge)
    plain, its_plain = P.conjugate_gradients(k, y, ridge, tol=1e-10, max_iter=5000)
    pre = P.NystromPreconditioner(k, 100, ridge)
    got, its_pre = P.conjugate_gradients(k, y, ridge, preconditioner=pre, tol=1e-10)
    close(plain, want)
    close(got, want)
    assert its_pre * 4 <= its_plain, (its_pre, its_plain)


def test_cg_that_cannot_converge_raises():
    k, _, y = problem()
    with pytest.raises(P.NotConvergedError, match="did not converge"):
        P.conjugate_gradients(k, y, 1e-6 * np.mean(np.diag(k)), tol=1e-10, max_iter=5)


@pytest.mark.parametrize("t", [np.inf, 3.0])
@pytest.mark.parametrize("solver", ["eigh", "cholesky", "cg"])
def test_every_solver_agrees_with_the_float64_direct_solve(solver, t):
    k, kx, y = problem()
    ridge = 1e-3 * np.mean(np.diag(k))
    got = P.kernel_regression(k, y, kx, t, ridge=ridge, solver=solver)
    a = k + ridge * np.eye(len(k))
    g = np.linalg.inv(a) if np.isinf(t) else np.linalg.solve(a, np.eye(len(k)) - sla.expm(-a * t))
    close(got.mean, kx @ g @ y)
    assert got.solver == solver and got.ridge == ridge


@pytest.mark.parametrize("solver", ["cholesky", "cg"])
def test_ram_memmap_and_zarr_inputs_give_the_same_answer(solver, tmp_path):
    k, kx, y = problem(n=250)
    ridge = 1e-2 * np.mean(np.diag(k))
    k32, kx32 = k.astype(np.float32), kx.astype(np.float32)
    mm = np.lib.format.open_memmap(tmp_path / "k.npy", mode="w+", dtype=np.float32, shape=k.shape)
    mm[:] = k32
    mm.flush()
    inputs = {"ram": (k32, kx32), "memmap": (np.load(tmp_path / "k.npy", mmap_mode="r"), kx32)}
    zarr = pytest.importorskip("zarr")
    z = zarr.open_array(str(tmp_path / "k.zarr"), mode="w", shape=k.shape, chunks=(128, 250), dtype="float32")
    z[:] = k32
    inputs["zarr"] = (z, kx32)
    means = {name: P.kernel_regression(a, y, b, ridge=ridge, solver=solver).mean for name, (a, b) in inputs.items()}
    for name in ("memmap", "zarr"):
        np.testing.assert_allclose(means[name], means["ram"], rtol=1e-9, atol=1e-12)
    close(means["ram"], kx32.astype(np.float64) @ dense_solve(k32.astype(np.float64), y, ridge))


def test_cholesky_in_place_over_a_memmap(tmp_path):
    k, _, y = problem(n=200)
    mm = np.lib.format.open_memmap(tmp_path / "k.npy", mode="w+", dtype=np.float32, shape=k.shape)
    mm[:] = k
    c = P.BlockedCholesky(mm, 1e-3, overwrite=True, block=64)
    assert c.a is mm
    close(c.solve(y), dense_solve(k.astype(np.float32).astype(np.float64), y, 1e-3), 1e-8)


def test_auto_chooses_by_size_and_memory_and_says_why():
    assert P.choose_solver(1000)[0] == "eigh"
    name, why = P.choose_solver(20000, available=16 * 2**30)
    assert name == "cholesky" and "fits" in why
    name, why = P.choose_solver(60000, available=8 * 2**30)
    assert name == "cg" and "does not fit" in why
    k, kx, y = problem(n=200)
    said = []
    got = P.kernel_regression(k, y, kx, ridge=1e-3, progress=said.append)
    assert got.solver == "eigh" and "n = 200" in got.reason and any("solver: eigh" in s for s in said)
    with pytest.raises(SpecError, match="solver"):
        P.kernel_regression(k, y, kx, solver="lu")


@pytest.mark.parametrize("solver", ["eigh", "cholesky", "cg"])
def test_ridge_on_a_held_out_split_matches_refitting(solver):
    k, _, y = problem(n=160)
    ridges = np.mean(np.diag(k)) * np.array([1e-5, 1e-3, 1e-1])
    got = P.select_ridge_holdout(k, y, ridges, fraction=0.25, seed=3, solver=solver)
    perm = np.random.default_rng(3).permutation(160)
    held, fit = np.sort(perm[:40]), np.sort(perm[40:])
    want = [np.mean((KernelRidge(alpha=r, kernel="precomputed").fit(k[np.ix_(fit, fit)], y[fit])
                     .predict(k[np.ix_(held, fit)]) - y[held]) ** 2) for r in ridges]
    np.testing.assert_allclose(got.errors, want, rtol=1e-5)
    assert got.ridge == ridges[np.argmin(want)]


def test_ridge_on_a_subsample_is_select_ridge_on_it():
    k, kx, y = problem(n=200)
    whole = P.select_ridge(k, y)
    assert P.select_ridge_subsample(k, y, size=200).ridge == whole.ridge
    got = P.kernel_regression(k, y, kx, solver="cholesky", cv_size=120)
    idx = np.sort(np.random.default_rng(0).choice(200, size=120, replace=False))
    assert got.solver == "cholesky" and "120 examples" in got.details
    assert got.ridge == P.select_ridge(k[np.ix_(idx, idx)], y[idx]).ridge


def test_subsample_ridge_of_a_float32_kernel_is_judged_by_the_rounding_probe_not_the_floor():
    """The n eps32 max(eigenvalue) floor of Eigh excludes small ridges that float32 affords here:
    the float64 solve (the oracle) at the ridge chosen agrees with the float32 one within the warning."""
    import re
    import warnings

    k64, kx64, y = problem()
    y = y[:, 0]
    k32, kx32 = k64.astype(np.float32), kx64.astype(np.float32)
    floor = P.select_ridge(k32, y)
    got = P.select_ridge_subsample(k32, y, size=300)
    assert np.sum(np.isfinite(got.errors)) > np.sum(np.isfinite(floor.errors))
    assert got.ridge < floor.ridge
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mean = P.kernel_regression(k32, y, kx32, ridge=got.ridge, solver="cholesky").mean
    said = [float(re.search(r"by up to ([0-9.e+-]+)", str(w.message)).group(1))
            for w in caught if issubclass(w.category, P.PrecisionWarning)]
    want = kx64.astype(np.float32).astype(np.float64) @ dense_solve(k32.astype(np.float64), y, got.ridge)
    assert np.max(np.abs(mean - want)) <= (max(said) if said else 1e-3)
    exact = kx64 @ dense_solve(k64, y, got.ridge)
    assert np.max(np.abs(mean - exact)) <= (max(said) if said else 1e-3 * np.sqrt(np.mean(y**2)))


def test_in_place_factorization_keeps_k_for_refinement_and_the_rounding_probe(tmp_path):
    import warnings

    k, kx, y = problem(n=200)
    ridge = 1e-2 * np.mean(np.diag(k))
    k32 = k.astype(np.float32)
    mm = np.lib.format.open_memmap(tmp_path / "k.npy", mode="w+", dtype=np.float32, shape=k.shape)
    mm[:] = k32
    runs = {}
    for overwrite, a in ((False, k32), (True, mm)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            mean = P.kernel_regression(a, y, kx.astype(np.float32), ridge=ridge, solver="cholesky",
                                       overwrite=overwrite, block=64).mean
        runs[overwrite] = mean, [str(w.message) for w in caught]
    np.testing.assert_allclose(runs[True][0], runs[False][0], rtol=1e-9, atol=1e-12)
    assert runs[True][1] == runs[False][1]  # the same estimate from K's rows rebuilt after the factorization
    assert not np.array_equal(np.tril(np.asarray(mm)), np.tril(k32))  # the memmap now holds L below


def test_nystrom_preconditioner_on_a_float32_kernel_that_rounding_made_indefinite():
    """A kernel computed in float32 is indefinite by its rounding (here a ReLU NTK of 600 points in
    3 dimensions: smallest eigenvalue -4e-8): the sketch's shift must scale with float32's eps (a
    float64-eps shift fails the Cholesky factorization with LinAlgError, the fault found at 60,000
    images), and CG with that preconditioner still solves the float32 matrix to the accuracy of
    the float64 direct solve."""
    x = np.random.default_rng(0).normal(size=(600, 3)).astype(np.float32)
    k32 = relu_ntk(x, x)
    k32 = (k32 + k32.T) / 2
    assert k32.dtype == np.float32 and np.linalg.eigvalsh(k32.astype(np.float64))[0] < 0
    y = np.random.default_rng(1).normal(size=(len(x), 2))
    ridge = 1e-3 * np.mean(np.diag(k32))
    pre = P.NystromPreconditioner(k32, len(x), ridge)  # full rank: sees every negative eigenvalue
    got, _ = P.conjugate_gradients(k32, y, ridge, preconditioner=pre, tol=1e-10)
    close(got, dense_solve(k32.astype(np.float64), y, ridge))


def test_nystrom_preconditioner_of_a_matrix_that_is_not_a_kernel_is_a_clear_error():
    k = -np.eye(50) - 0.1  # negative definite: no shift within reason makes it a kernel
    with pytest.raises(SpecError, match="not positive definite"):
        P.NystromPreconditioner(k, 20, 1e-3)


def test_a_factorization_that_breaks_down_in_place_leaves_the_kernel_as_it_was():
    """K + ridge I indefinite past the first block: SingularKernelError, and the array factored in
    place is K again (so that a larger ridge can be tried on it, as the ridge fallback does)."""
    from infkernel.predict.blocked import BlockedCholesky
    from infkernel.predict.checks import SingularKernelError
    rng = np.random.default_rng(0)
    g = rng.standard_normal((40, 40))
    k = (g @ g.T / 40).astype(np.float32)
    k[30:, 30:] -= 5 * np.eye(10, dtype=np.float32)  # negative directions in the last block
    original = k.copy()
    with pytest.raises(SingularKernelError):
        BlockedCholesky(k, ridge=1e-3, overwrite=True, block=16)
    np.testing.assert_array_equal(k, original)
