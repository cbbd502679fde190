"""K(x, x) of a vector network in one call of strips (`engine.strips`): the
circulant schedule covers every pair of blocks exactly once, and the kernel
equals the one of the tile-by-tile path (`batch_size` given) and the float64
reference of an independent per-pair computation (the cross kernel K(x, x'))."""
import numpy as np
import pytest

import infkernel as ik
from infkernel.engine import strips

SPEC = "input 5\nrepeat 3:\n    dense w_std=1.4 b_std=0.1\n    relu\ndense\n"


@pytest.mark.parametrize("n, side", [(1, 128), (2, 128), (7, 2), (9, 2), (16, 4), (17, 4), (40, 8)])
def test_every_pair_of_blocks_once(n, side):
    """Assembled from strips whose entries name the (row, column) they were
    computed for, every entry (i, j) of the n x n matrix names {i, j}: each
    pair of blocks comes from a strip (either orientation), and K[i, j] and
    K[j, i] come from the same computed entry (the matrix is exactly symmetric)."""
    t, k, h = strips.strip_plan(n, 1, side)
    m = k * t
    rows = np.arange(m)
    cols = (np.arange(k)[:, None] * t + np.arange((h + 1) * t)[None, :]) % m  # strip r, column index
    code = (rows.reshape(k, t)[:, :, None] * m + cols[:, None, :]).astype(np.float64)
    target = np.full((n, n), -1.0)
    strips.assemble(code, k, h, t, target)
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    a, b = target // m, target % m
    assert np.array_equal(np.minimum(a, b), np.minimum(i, j)) and np.array_equal(np.maximum(a, b), np.maximum(i, j))
    assert np.array_equal(target, target.T)


@pytest.mark.parametrize("n", [1, 2, 9, 23])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_strips_equal_tiles_and_cross_kernel(n, dtype, monkeypatch):
    monkeypatch.setattr(strips, "SIDE", 4)  # several strips, k even and odd
    kfn = ik.compile(SPEC)
    x = np.random.default_rng(n).standard_normal((n, 5))
    k = kfn(x, dtype=dtype, progress=False)
    assert kfn.engine.layout.mode == "strips"
    tiles = kfn(x, dtype=dtype, progress=False, batch_size=4)
    assert kfn.engine.layout.mode == "blocks"
    cross = kfn(x, x.copy(), dtype="float64", progress=False)
    tol = 1e-12 if dtype == "float64" else 1e-6
    off = ~np.eye(n, dtype=bool)
    for kind in ("nngp", "ntk"):
        a, b, c = getattr(k, kind), getattr(tiles, kind), getattr(cross, kind)
        assert np.array_equal(a, a.T)
        scale = np.abs(c).max()
        assert np.abs(a - b).max() <= tol * scale
        assert np.abs(a - c)[off].max(initial=0) <= tol * scale


@pytest.mark.parametrize("n", [3, 40])
def test_a_non_finite_entry_off_the_diagonal_is_still_caught(n, monkeypatch):
    """The strips call checks finiteness on the device and the kernel then skips
    its own pass over the result: an inf in one off-diagonal entry (injected into
    the cross pass for the pair of examples whose first input is 7 and 9) must
    still raise NonFiniteKernel, naming that entry."""
    import jax.numpy as jnp

    from infkernel.overflow import NonFiniteKernel
    monkeypatch.setattr(strips, "SIDE", 4)
    kfn = ik.compile(SPEC)
    cross = kfn.program.cross_pass

    def poisoned(x1, x2, v1, v2, need_ntk):
        nngp, ntk = cross(x1, x2, v1, v2, need_ntk)
        a, b = x1[:, None, 0], x2[None, :, 0]
        hit = ((a == 7) & (b == 9)) | ((a == 9) & (b == 7))  # whichever way the strip holds it
        return jnp.where(hit, jnp.inf, nngp), ntk

    monkeypatch.setattr(kfn.program, "cross_pass", poisoned)
    x = np.random.default_rng(0).standard_normal((n, 5))
    x[n - 1, 0], x[1, 0] = 7, 9
    with pytest.raises(NonFiniteKernel) as info:
        kfn(x, progress=False)
    assert kfn.engine.layout.mode == "strips"
    assert sorted(info.value.pair) == [1, n - 1]
    x[1, 0] = 8  # no such pair: finite, and no error
    assert np.isfinite(kfn(x, progress=False).nngp).all()


@pytest.mark.parametrize("n, rows", [(5, 5), (5, 8), (1, 4)])
def test_aligned_pad_is_pad_to_in_aligned_memory(n, rows):
    from infkernel.engine.plan import ALIGN, aligned_pad, pad_to
    a = np.random.default_rng(n).standard_normal((n + 1, 3)).astype(np.float32)[1:]  # a view: 12 B offset
    out = aligned_pad(a, rows)
    assert out.ctypes.data % ALIGN == 0 and out.flags.c_contiguous
    assert np.array_equal(out, pad_to(a, rows))
    assert aligned_pad(out, rows) is out  # already aligned and long enough: no copy


def test_wide_inputs_that_do_not_fit_go_in_tiles():
    """The strips call holds x and a gathered window of (k/2 + 1) T rows of it on
    the device: with 20,000 features and a 40 MB budget that does not fit, and
    the kernel comes from square tiles instead, equal to the strips' one."""
    kfn = ik.compile("input 20000\ndense w_std=1.4 b_std=0.1\nrelu\ndense\n")
    x = np.random.default_rng(0).standard_normal((300, 20000)).astype(np.float32)
    tiles = kfn(x, memory="40MB", progress=False)
    assert kfn.engine.layout.mode == "blocks"
    strips = kfn(x, memory="1GB", progress=False)
    assert kfn.engine.layout.mode == "strips"
    np.testing.assert_allclose(tiles.ntk, strips.ntk, rtol=0, atol=1e-6 * np.abs(strips.ntk).max())
