"""The resumable Zarr store, in process: what it holds, resuming, refusing
another computation, reporting an unfinished store (status and the API).

The oracle is the default in-process engine (a stream of pairs, another
tiling): equal to float rounding. A resumed store must equal an uninterrupted
one bit for bit (each tile is a pure function of its rows).
"""
import numpy as np
import pytest

import infkernel as ik
from infkernel.cli import main as cli_main
from infkernel.engine import tiles

zarr = pytest.importorskip("zarr")

SPEC = "input 4x4x2\nconv 3x3 same w_std=1.4 b_std=0.1\nrelu\nconv 2x2 w_std=1.3\nrelu\ngap\ndense\n"
SIDE = 4  # tile side (batch_size): 10 examples -> 3 x 3 tiles, 6 computed when x2 is x1


@pytest.fixture(scope="module")
def kfn():
    return ik.compile(SPEC)


def data(n, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 4, 4, 2)).astype(np.float32)


def rel(a, b):
    return float(np.abs(np.asarray(a, np.float64) - b).max() / np.abs(b).max())


@pytest.fixture(scope="module")
def reference(kfn):
    return kfn(data(10), progress=False)


def test_store_holds_the_kernel_readable_by_plain_zarr(kfn, reference, tmp_path):
    k = kfn(data(10), out=tmp_path / "K.zarr", batch_size=SIDE, progress=False)
    assert kfn.last_run == {"computed": 6, "skipped": 0, "total": 6}
    group = zarr.open_group(tmp_path / "K.zarr", mode="r")
    for kind in ("nngp", "ntk"):
        stored = group[kind][:]
        assert group[kind].chunks == (SIDE, SIDE)
        assert rel(stored, getattr(reference, kind)) < 1e-6
        assert np.array_equal(stored, stored.T)  # upper tiles stored both ways
        assert np.array_equal(stored, k[1][:] if kind == "ntk" else k[0][:])
    assert np.array_equal(ik.open_kernel(tmp_path / "K.zarr").ntk, group["ntk"][:])
    # Again: every tile is found done, nothing is computed.
    kfn(data(10), out=tmp_path / "K.zarr", batch_size=SIDE, progress=False)
    assert kfn.last_run == {"computed": 0, "skipped": 6, "total": 6}
    # A cross kernel K(x1, x2): every tile computed, none mirrored.
    c = kfn(data(10), data(5, seed=1), out=tmp_path / "C.zarr", batch_size=SIDE, get="ntk", progress=False)
    assert kfn.last_run["total"] == 3 * 2 and c.nngp is None
    assert rel(c.ntk[:], kfn(data(10), data(5, seed=1), get="ntk", progress=False).ntk) < 1e-6


def test_store_of_a_network_without_spatial_axes(tmp_path):
    """Square blocks (dense layers) rather than pair streams inside each tile."""
    dense = ik.compile("input 5\nrepeat 2:\n    dense w_std=1.4 b_std=0.1\n    relu\ndense\n")
    x = np.random.default_rng(0).standard_normal((11, 5))
    exact = dense(x, dtype="float64", progress=False)
    k = dense(x, dtype="float64", batch_size=4, out=tmp_path / "K.zarr", progress=False)
    assert dense.last_run["total"] == 6
    np.testing.assert_allclose(k.ntk[:], exact.ntk, rtol=1e-12)
    np.testing.assert_allclose(k.nngp[:], exact.nngp, rtol=1e-12)
    assert np.array_equal(k.ntk[:], k.ntk[:].T)


@pytest.mark.parametrize("change", ["spec", "input", "dtype", "kinds"])
def test_another_computation_is_refused(kfn, tmp_path, change, capsys):
    path = tmp_path / "K.zarr"
    kfn(data(6), out=path, batch_size=SIDE, progress=False)
    before = zarr.open_group(path, mode="r")["ntk"][:]
    other = ik.compile(SPEC.replace("w_std=1.3", "w_std=1.2")) if change == "spec" else kfn
    x = data(6, seed=7) if change == "input" else data(6)
    kw = {"dtype": "float64"} if change == "dtype" else {"get": "ntk"} if change == "kinds" else {}
    with pytest.raises(ik.SpecError, match="another computation"):
        other(x, out=path, batch_size=SIDE, progress=False, **kw)
    assert np.array_equal(zarr.open_group(path, mode="r")["ntk"][:], before)  # untouched
    # The command line: exit status 2 and the reason.
    spec = tmp_path / "net.ik"
    spec.write_text(SPEC.replace("w_std=1.3", "w_std=1.2") if change == "spec" else SPEC)
    np.save(tmp_path / "x.npy", x)
    argv = ["kernel", str(spec), "--x1", str(tmp_path / "x.npy"), "--out", str(path), "--quiet",
            "--batch-size", str(SIDE)]
    argv += {"dtype": ["--x64"], "kinds": ["--get", "ntk"]}.get(change, [])
    assert cli_main(argv) == 2
    assert "another computation" in capsys.readouterr().err


def test_unfinished_store_is_reported_and_resumed(kfn, reference, tmp_path, monkeypatch, capsys):
    path = tmp_path / "K.zarr"
    calls = []
    compute = tiles.TileKernel.__call__

    def interrupted(self, *args):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(args)
        return compute(self, *args)

    monkeypatch.setattr(tiles.TileKernel, "__call__", interrupted)
    with pytest.raises(KeyboardInterrupt):
        kfn(data(10), out=path, batch_size=SIDE, progress=False)
    monkeypatch.undo()
    # status: unfinished, 2 of 6 (exit status 1); the API refuses unless asked for the partial kernel.
    assert cli_main(["status", str(path)]) == 1
    out = capsys.readouterr().out
    assert "unfinished" in out and "2 of 6 done" in out and "1 started and not done" in out
    with pytest.raises(ik.SpecError, match="unfinished: 2 of 6"):
        ik.open_kernel(path)
    part = ik.open_kernel(path, partial=True)
    assert np.isnan(part.ntk).any() and not np.isnan(part.ntk[:SIDE, :2 * SIDE]).any()  # tiles (0, 0), (0, 1)
    assert rel(part.ntk[:SIDE, :2 * SIDE], reference.ntk[:SIDE, :2 * SIDE]) < 1e-6
    assert not zarr.open_group(path, mode="r").attrs["infkernel"]["complete"]
    # Resumed: only the 4 tiles not done are computed; equal bit for bit to an uninterrupted store.
    k = kfn(data(10), out=path, batch_size=SIDE, progress=False)
    assert kfn.last_run == {"computed": 4, "skipped": 2, "total": 6}
    whole = kfn(data(10), out=tmp_path / "W.zarr", batch_size=SIDE, progress=False)
    assert np.array_equal(k.ntk[:], whole.ntk[:]) and np.array_equal(k.nngp[:], whole.nngp[:])
    assert cli_main(["status", str(path)]) == 0
    assert "complete" in capsys.readouterr().out
    assert zarr.open_group(path, mode="r").attrs["infkernel"]["complete"]


def test_status_of_something_else_exits_2(tmp_path, capsys):
    zarr.open_group(tmp_path / "plain.zarr", mode="w").create_array("a", shape=(2,), dtype="f4")
    assert cli_main(["status", str(tmp_path / "plain.zarr")]) == 2
    assert cli_main(["status", str(tmp_path / "missing.zarr")]) == 2
    assert "not a kernel store" in capsys.readouterr().err
