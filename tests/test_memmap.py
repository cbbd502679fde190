"""Kernels streamed to memory-mapped files (`kfn(..., out=PATH)`, `infkernel kernel --out K.npy`):
their values against the in-memory kernel, for K(x1, x2) as well as K(x1, x1), in both ways the
engine cuts the work (square blocks for dense nets, a stream of input pairs when pooling needs pairs
of positions), over many tiles, and when a second call writes to the same path. Public API only."""
from __future__ import annotations

import numpy as np
import pytest

import infkernel as ik
from infkernel.cli import main

SPECS = {  # "gap" needs covariances between pairs of positions; "dense" has no spatial axes
    "gap": ("input 4x4x2\nconv 3x3 same w_std=1.4 b_std=0.1\nrelu\ngap\ndense\n", (4, 4, 2)),
    "dense": ("input 5\nrepeat 2:\n    dense w_std=1.4 b_std=0.1\n    relu\ndense\n", (5,)),
}


def inputs(name, n, seed):
    return np.random.default_rng(seed).standard_normal((n,) + SPECS[name][1])


@pytest.fixture(scope="module")
def kfns():
    return {name: ik.compile(spec) for name, (spec, _) in SPECS.items()}


@pytest.mark.parametrize("name", ["gap", "dense"])
def test_cross_kernel_memmap_equals_in_memory(kfns, name, tmp_path):
    kfn, x1, x2 = kfns[name], inputs(name, 7, 0), inputs(name, 4, 1)
    ref = kfn(x1, x2, dtype="float64", progress=False)
    k = kfn(x1, x2, dtype="float64", progress=False, batch_size=2, out=tmp_path / "C.npy")  # 4 x 2 tiles
    for kind in ("nngp", "ntk"):
        on_disk = np.load(tmp_path / f"C.{kind}.npy")
        assert on_disk.shape == (7, 4) and on_disk.dtype == np.float64
        np.testing.assert_allclose(on_disk, getattr(ref, kind), rtol=1e-12, atol=1e-14)
        np.testing.assert_array_equal(np.asarray(getattr(k, kind)), on_disk)
    # the cross kernel is the off-diagonal block of the kernel of all inputs
    full = kfn(np.concatenate([x1, x2]), dtype="float64", progress=False)
    np.testing.assert_allclose(ref.ntk, full.ntk[:7, 7:], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", ["gap", "dense"])
def test_memmap_over_several_calls_to_one_path(kfns, name, tmp_path):
    """A second call to the same path replaces the first one's file entirely, whatever its shape."""
    kfn = kfns[name]
    xa, xb, xc = inputs(name, 6, 2), inputs(name, 3, 3), inputs(name, 5, 4)
    kfn(xa, dtype="float64", progress=False, batch_size=2, out=tmp_path / "K.npy")
    for x1, x2 in ((xb, None), (xc, xa), (xa, None)):
        ref = kfn(x1, x2, dtype="float64", progress=False)
        kfn(x1, x2, dtype="float64", progress=False, batch_size=2, out=tmp_path / "K.npy")
        for kind in ("nngp", "ntk"):
            on_disk = np.load(tmp_path / f"K.{kind}.npy")
            np.testing.assert_allclose(on_disk, getattr(ref, kind), rtol=1e-12, atol=1e-14)
            if x2 is None:
                np.testing.assert_array_equal(on_disk, on_disk.T)


def test_cli_cross_kernel_memmap_values(tmp_path, capsys):
    spec, _ = SPECS["gap"]
    (tmp_path / "net.ik").write_text(spec)
    x1, x2 = inputs("gap", 5, 5), inputs("gap", 3, 6)
    np.save(tmp_path / "a.npy", x1)
    np.save(tmp_path / "b.npy", x2)
    argv = ["kernel", str(tmp_path / "net.ik"), "--x1", str(tmp_path / "a.npy"), "--x2", str(tmp_path / "b.npy"),
            "--out", str(tmp_path / "C.npy"), "--x64", "--batch-size", "2", "--quiet"]
    assert main(argv) == 0
    ref = ik.compile(spec)(x1, x2, dtype="float64", progress=False)
    for kind in ("nngp", "ntk"):
        np.testing.assert_allclose(np.load(tmp_path / f"C.{kind}.npy"), getattr(ref, kind), rtol=1e-12, atol=1e-14)
