"""Two rows holding the same example: their kernel entry is the example's own,
K(x, x) from the self pass (`infkernel.identical`). In float32 the cross pass
alone is ~sqrt(eps) off there on ReLU nets (arccos at correlation 1)."""
import numpy as np
import pytest

import infkernel as ik
from infkernel import identical
from infkernel.identical import identical_pairs

SPEC = "input 6\nrepeat 3:\n    dense w_std=1.4 b_std=0.1\n    relu\ndense\n"


def brute_force(x1, x2=None):
    b = x1 if x2 is None else x2
    return {(i, j) for i in range(len(x1)) for j in range(len(b))
            if np.array_equal(x1[i], b[j]) and (x2 is not None or i != j)}


@pytest.mark.parametrize("collide", [False, True])
def test_identical_pairs_are_exactly_the_equal_rows(collide, monkeypatch):
    if collide:  # every row the same hash: the equality check alone must sort them out
        monkeypatch.setattr(identical, "_hashes", lambda rows: np.zeros(rows.shape[0], np.uint64))
    rng = np.random.default_rng(0)
    x1 = rng.integers(0, 3, size=(40, 2, 3)).astype(np.float32)  # many repeats among 18 values
    x2 = rng.integers(0, 3, size=(25, 2, 3)).astype(np.float32)
    for a, b in ((x1, x2), (x1, None), (x2, x1)):
        rows, cols = identical_pairs(a, b)
        assert set(zip(rows.tolist(), cols.tolist())) == brute_force(a, b) and len(rows) == len(brute_force(a, b))
    assert identical_pairs(x1[:1], None)[0].size == 0


def test_a_repeated_example_gets_its_own_kernel_in_float32():
    kfn = ik.compile(SPEC)
    x = np.random.default_rng(1).standard_normal((30, 6))
    y = np.concatenate([x[::-3], np.random.default_rng(2).standard_normal((4, 6))])  # 10 repeats, 4 new
    k32, k64 = kfn(x, y, progress=False), kfn(x, y, dtype="float64", progress=False)
    for kind in ("nngp", "ntk"):
        a, b = getattr(k32, kind), getattr(k64, kind)
        assert np.abs(a - b).max() <= 1e-6 * np.abs(b).max(), kind
    rows, cols = identical_pairs(x.astype(np.float32), y.astype(np.float32))
    assert len(rows) == 10
    own = kfn(x, progress=False)  # its self pass ran on other batches: equal to rounding
    np.testing.assert_allclose(k32.ntk[rows, cols], np.diag(own.ntk)[rows], rtol=3e-7, atol=0)
    # duplicates inside one set: the entry of the two copies is the diagonal's value
    z = np.concatenate([x, x[:5]])
    kz = kfn(z, progress=False)
    np.testing.assert_array_equal(kz.ntk[:5, 30:], np.diag(np.diag(kz.ntk)[:5]) + kz.ntk[:5, 30:] * (1 - np.eye(5)))
    np.testing.assert_array_equal(np.diag(kz.ntk[:5, 30:]), np.diag(kz.ntk)[:5])


def test_the_same_examples_twice_are_one_symmetric_kernel():
    kfn = ik.compile(SPEC)
    x = np.random.default_rng(3).standard_normal((9, 6))
    a, b = kfn(x, x.copy(), progress=False), kfn(x, progress=False)
    np.testing.assert_array_equal(a.ntk, b.ntk)
    np.testing.assert_array_equal(a.nngp, b.nngp)


def test_stores_and_memmaps_are_patched_too(tmp_path):
    kfn = ik.compile(SPEC)
    x = np.random.default_rng(4).standard_normal((8, 6))
    y = np.concatenate([x[2:4], np.random.default_rng(5).standard_normal((3, 6))])
    want = np.diag(kfn(x, get="ntk", progress=False).ntk)[2:4]
    store = kfn(x, y, get="ntk", out=str(tmp_path / "K.zarr"), batch_size=4, progress=False)
    np.testing.assert_array_equal(np.asarray(store.ntk)[[2, 3], [0, 1]], want)
    mm = kfn(x, y, get="ntk", out=str(tmp_path / "M"), progress=False)
    np.testing.assert_array_equal(np.load(tmp_path / "M.ntk.npy")[[2, 3], [0, 1]], want)
    assert mm.nngp is None
