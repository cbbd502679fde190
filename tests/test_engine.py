"""The engine: tiling, symmetry, memory-mapped output, progress, devices, the CLI.

Small and fast; speed and memory are measured by `infkernel bench`, not here.
"""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import infkernel as ik
from infkernel import engine
from infkernel.cli import main as cli_main
from infkernel.ops.activations import arctan2

ROOT = Path(__file__).resolve().parents[1]

# One spec per way of cutting the work: a stream of input pairs (spatial axes,
# here pairs of positions for gap) and square blocks (no spatial axes: dense).
# Few distinct shapes and batch sizes: every one is a compile.
SPECS = {
    "gap": "input 4x4x2\nconv 3x3 same w_std=1.4 b_std=0.1\nrelu\nconv 2x2 w_std=1.3\nrelu\ngap\ndense\n",
    "dense": "input 5\nrepeat 2:\n    dense w_std=1.4 b_std=0.1\n    relu\ndense\n",
}
SHAPES = {"gap": (4, 4, 2), "dense": (5,)}


@pytest.fixture(scope="module")
def kfns():
    return {name: ik.compile(spec) for name, spec in SPECS.items()}


def data(name, n, seed=0):
    return np.random.default_rng(seed).standard_normal((n,) + SHAPES[name]).astype(np.float32)


def rel(a, b):
    return float(np.abs(np.asarray(a, np.float64) - b).max() / np.abs(b).max())


@pytest.mark.parametrize("name", ["gap", "dense"])
def test_results_do_not_depend_on_the_tiling(kfns, name):
    kfn, x = kfns[name], data(name, 9)
    ref = kfn(x, progress=False)
    roomy = kfn.engine.layout
    tight = 2 * engine.pair_bytes(kfn.program, 4) * (9 if name == "dense" else 1)
    for kw in ({"memory": tight}, {"batch_size": 3}):
        k = kfn(x, progress=False, **kw)
        assert rel(k.nngp, ref.nngp) < 1e-6 and rel(k.ntk, ref.ntk) < 1e-6, kw
        if "memory" in kw:  # the budget bounds the pairs alive at once
            if roomy.mode == "strips":  # K(x, x) of a dense net in one call, if it fits; tiles otherwise
                assert kfn.engine.layout.mode == "blocks" and kfn.engine.layout.inner <= 2
            else:
                assert kfn.engine.layout.mode == roomy.mode and kfn.engine.layout.inner <= 2 < roomy.inner


def test_symmetric_equals_explicit_x2(kfns):
    kfn, x = kfns["gap"], data("gap", 9)
    sym, full = kfn(x, progress=False), kfn(x, x.copy(), progress=False)
    off = ~np.eye(len(x), dtype=bool)
    assert rel(sym.ntk[off], full.ntk[off]) < 1e-6 and rel(sym.nngp[off], full.nngp[off]) < 1e-6
    assert np.array_equal(sym.ntk, sym.ntk.T)
    # On the diagonal an explicit x2 sees arccos at 1 +- rounding (1e-4 in float32);
    # the symmetric computation takes it from the self pass, where it is exact.
    dense, xd = kfns["dense"], data("dense", 9)
    exact = dense(xd, dtype="float64", progress=False)
    assert rel(np.diag(dense(xd, progress=False).ntk), np.diag(exact.ntk)) < 1e-6
    np.testing.assert_allclose(dense(xd, xd.copy(), dtype="float64", progress=False).ntk, exact.ntk, rtol=1e-8)
    assert np.array_equal(exact.ntk, exact.ntk.T)


def test_cross_kernel_blocks_of_the_full_kernel(kfns):
    kfn = kfns["gap"]
    x, y = data("gap", 6), data("gap", 3, seed=1)
    k = kfn(x, y, progress=False)
    full = kfn(np.concatenate([x, y]), progress=False)
    assert k.ntk.shape == (6, 3)
    assert rel(k.ntk, full.ntk[:6, 6:]) < 1e-6 and rel(k.nngp, full.nngp[:6, 6:]) < 1e-6


@pytest.mark.parametrize("name", ["gap", "dense"])
def test_memmap_output_equals_in_memory(kfns, name, tmp_path):
    kfn, x = kfns[name], data(name, 9)
    ref = kfn(x, progress=False)
    k = kfn(x, progress=False, batch_size=3, out=tmp_path / "K.npy")  # several tiles
    assert isinstance(k.ntk, np.memmap)
    for kind in ("nngp", "ntk"):
        on_disk = np.load(tmp_path / f"K.{kind}.npy")
        assert rel(on_disk, getattr(ref, kind)) < 1e-6
    only = kfn(x, get="nngp", progress=False, out=tmp_path / "C")
    assert only.ntk is None and (tmp_path / "C.nngp.npy").exists() and not (tmp_path / "C.ntk.npy").exists()
    assert rel(np.load(tmp_path / "C.nngp.npy"), ref.nngp) < 1e-6


@pytest.mark.parametrize("name", ["gap", "dense"])
def test_npy_output_appears_only_when_complete(kfns, name, tmp_path, monkeypatch):
    """Interrupted: no K.<kind>.npy (and no leftover partial file); finished
    files of an earlier run stay as they were until a new run completes."""
    kfn, x = kfns[name], data(name, 9)
    done = kfn(x, progress=False, batch_size=3, out=tmp_path / "K.npy")
    before = np.load(tmp_path / "K.ntk.npy")
    seen = []
    drive = engine.Engine._drive

    def interrupted(self, items, launch, store, *args):
        def store_then_stop(item, result):
            seen.append(sorted(p.name for p in tmp_path.iterdir()))
            store(item, result)
            raise KeyboardInterrupt

        return drive(self, items, launch, store_then_stop, *args)

    monkeypatch.setattr(engine.Engine, "_drive", interrupted)
    with pytest.raises(KeyboardInterrupt):
        kfn(2 * x, progress=False, batch_size=3, out=tmp_path / "K.npy")
    assert "K.ntk.npy.partial" in seen[0]  # written under the temporary name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["K.nngp.npy", "K.ntk.npy"]
    assert np.array_equal(np.load(tmp_path / "K.ntk.npy"), before) and np.array_equal(before, done.ntk)
    with pytest.raises(KeyboardInterrupt):
        kfn(x, progress=False, batch_size=3, out=tmp_path / "new.npy")
    assert not any(p.name.startswith("new") for p in tmp_path.iterdir())


def test_same_position_programs_go_in_cache_sized_tiles_and_agree_with_the_pair_stream():
    # Flatten needs no pairs of positions: square tiles (variances shared by a
    # row or column). The pair stream, the other way of cutting the same work,
    # is the oracle; float64 makes any tiling mistake stand out.
    kfn = ik.compile("input 6x6x2\nconv 3x3 same w_std=1.4 b_std=0.1\nrelu\nflatten\ndense\n")
    assert not engine.uses_pairs(kfn.program) and engine.uses_pairs(ik.compile(SPECS["gap"]).program)
    x = np.random.default_rng(0).standard_normal((7, 6, 6, 2))
    tiles = kfn(x, dtype="float64", progress=False, memory="64MB")
    assert kfn.engine.layout.mode == "blocks"
    kfn.engine.pairs = True
    stream = kfn(x, dtype="float64", progress=False, memory="64MB")
    assert kfn.engine.layout.mode == "pairs"
    for a, b in zip(tiles, stream):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=0)


def test_tile_side_keeps_a_tile_of_covariances_within_the_cache_budget():
    # 32x32 positions in float32: 16 x 16 x 1024 x 4 bytes = 1 MiB per array.
    assert engine.plan.tile_side(256, 1, 1024, 4) == 16
    assert engine.plan.tile_side(100, 1, 1024, 4) == 15  # 7 even tiles, not 6 of 16 and a 4
    assert engine.plan.tile_side(9, 2, 1024, 4) == 10  # small: one tile, a multiple of the devices
    layout = engine.plan_blocks(256, 256, True, 1, 2**30, 12 * 4096, 4, 1e-4, None, entry_max=1024)
    assert (layout.per_call, layout.inner) == (16, 16)


def test_vector_tiles_step_over_rows_whose_covariances_fit_the_cache_budget():
    # K(x1, x2) of a dense net, 2048 x 2048 in one tile: 128 rows per step (128 x 2048 x 4 B = 1 MiB),
    # not all 2048 rows at once (each layer would then stream 16 MB arrays through memory).
    layout = engine.plan_blocks(2048, 2048, False, 1, 2**32, 100, 4, 1e-8, None)
    assert layout.per_call * layout.inner * 4 <= engine.plan.FAST_BYTES and layout.inner >= 64
    assert layout.per_call % layout.inner == 0


def test_pair_stream_covers_each_pair_once():
    for n1, n2, sym in ((7, 7, True), (5, 9, False), (300, 300, True)):
        pairs = [(a, b) for ia, ib in engine.pair_stream(n1, n2, sym, 37, block=64) for a, b in zip(ia, ib)]
        want = {(a, b) for a in range(n1) for b in range(n2) if not sym or a < b}
        assert len(pairs) == len(want) == engine.pair_count(n1, n2, sym) and set(pairs) == want


def test_progress_bar_on_request_only(kfns, capfd):
    kfn, x = kfns["dense"], data("dense", 5)
    kfn(x, progress=False)
    assert "kernel" not in capfd.readouterr().err
    kfn(x, progress=True)
    assert "kernel" in capfd.readouterr().err


def test_fast_arctan2_is_accurate_and_exact_at_zero():
    y = np.random.default_rng(0).uniform(0, 3, 100_000).astype(np.float32)
    x = np.random.default_rng(1).uniform(-3, 3, 100_000).astype(np.float32)
    got = np.asarray(jax.jit(arctan2)(jnp.asarray(y), jnp.asarray(x)), np.float64)
    assert np.abs(got - np.arctan2(y.astype(np.float64), x.astype(np.float64))).max() < 5e-7
    assert float(arctan2(jnp.float32(0), jnp.float32(2.5))) == 0.0


def test_parse_memory():
    assert engine.parse_memory("2GB") == 2 * 2**30
    assert engine.parse_memory("512MB") == 512 * 2**20
    assert engine.parse_memory(1e9) == 10**9
    with pytest.raises(ik.SpecError):
        engine.parse_memory("lots")


MULTI_DEVICE = textwrap.dedent("""
    import json, sys, numpy as np, jax
    import infkernel as ik
    out = {"devices": len(jax.local_devices())}
    for name, spec, shape in json.loads(sys.argv[1]):
        x = np.random.default_rng(0).standard_normal([9] + shape).astype(np.float32)
        kfn = ik.compile(spec)
        k = kfn(x, progress=False)
        out[name] = {"ntk": k.ntk.tolist(), "nngp": k.nngp.tolist(), "devices": kfn.engine.layout.devices}
    print(json.dumps(out))
""")


def test_tiles_spread_over_devices(kfns):
    cases = [(name, SPECS[name], list(SHAPES[name])) for name in ("gap", "dense")]
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", MULTI_DEVICE, json.dumps(cases)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["devices"] == 2
    for name, _, _ in cases:
        assert got[name]["devices"] == 2
        ref = kfns[name](data(name, 9), progress=False)
        assert rel(np.array(got[name]["ntk"]), ref.ntk) < 1e-6
        assert rel(np.array(got[name]["nngp"]), ref.nngp) < 1e-6


# -- the `kernel` command ----------------------------------------------------------------

@pytest.fixture
def spec_file(tmp_path):
    path = tmp_path / "net.ik"
    path.write_text(SPECS["dense"])
    return path


def test_cli_kernel_writes_npz_and_memmaps(spec_file, tmp_path, capsys):
    x = data("dense", 6)
    np.save(tmp_path / "x1.npy", x)
    np.save(tmp_path / "x2.npy", data("dense", 3, seed=1))
    assert cli_main(["kernel", str(spec_file), "--x1", str(tmp_path / "x1.npy"), "--out", str(tmp_path / "K.npz"),
                     "--quiet"]) == 0
    line = capsys.readouterr().out.strip()
    assert "6x6" in line and line.count("\n") == 0
    saved = np.load(tmp_path / "K.npz")
    ref = ik.compile(SPECS["dense"])(x, progress=False)
    assert rel(saved["ntk"], ref.ntk) < 1e-6
    assert cli_main(["kernel", str(spec_file), "--x1", str(tmp_path / "x1.npy"), "--x2", str(tmp_path / "x2.npy"),
                     "--out", str(tmp_path / "C.npy"), "--get", "ntk", "--x64", "--batch-size", "2", "--quiet"]) == 0
    c = np.load(tmp_path / "C.ntk.npy")
    assert c.shape == (6, 3) and c.dtype == np.float64 and not (tmp_path / "C.nngp.npy").exists()


def test_cli_kernel_runs_a_bundled_example_without_inputs(tmp_path, capsys):
    spec = tmp_path / "digits.ik"
    spec.write_text("input 64\nlet w = 1\ndense w_std=sqrt(2)\nrelu\ndense w_std=w\n")
    assert cli_main(["kernel", str(spec), "--out", str(tmp_path / "K.npz"), "--set", "w=2", "--quiet"]) == 0
    assert "digits" in capsys.readouterr().out
    assert np.load(tmp_path / "K.npz")["nngp"].shape == (100, 100)


@pytest.mark.parametrize("problem", ["missing", "garbage", "shape", "suffix", "get", "memory", "set"])
def test_cli_kernel_user_errors_exit_2(spec_file, tmp_path, problem, capsys):
    np.save(tmp_path / "good.npy", data("dense", 3))
    np.save(tmp_path / "wrong.npy", np.zeros((3, 4), np.float32))
    (tmp_path / "garbage.npy").write_text("not an array")
    x1 = {"missing": "nope.npy", "garbage": "garbage.npy", "shape": "wrong.npy"}.get(problem, "good.npy")
    argv = ["kernel", str(spec_file), "--x1", str(tmp_path / x1), "--out", str(tmp_path / "K.npz"), "--quiet"]
    argv += {"suffix": ["--out", str(tmp_path / "K.txt")], "get": ["--get", "nngp,foo"],
             "memory": ["--memory", "lots"], "set": ["--set", "w"]}.get(problem, [])
    assert cli_main(argv) == 2
    assert "error" in capsys.readouterr().err


def test_compiled_calls_are_kept(kfns, monkeypatch):
    """A repeated computation with the same shapes and budget does not lower
    and compile its calls again (each costs milliseconds); another budget does."""
    from infkernel.engine.calls import Calls
    kfn, x = kfns["gap"], data("gap", 7)
    ref = kfn(x, progress=False)
    compiles = []
    original = Calls._compile
    monkeypatch.setattr(Calls, "_compile", lambda self, *a: compiles.append(a[0]) or original(self, *a))
    again = kfn(x, progress=False)
    assert compiles == [] and np.array_equal(again.ntk, ref.ntk)
    kfn(x, progress=False, memory=2**29)
    assert compiles == ["self", "pairs"]
