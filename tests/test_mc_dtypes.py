"""Finite networks in every dtype x generator x op, each setting in a fresh
interpreter (issue 15, kind 3: float64 Monte Carlo with the NumPy generator
crashed in the random-number callback, "Expected: uint64, Actual: uint32",
because the callback runs where the caller's enable_x64 is not in force).

Whether it fails depends on interpreter state (x64 on or off globally, which
dtype ran first and filled the jit caches), so every combination runs in its
own subprocess (all started at once by one module fixture, so they share the
cores). The reference: float32 and float64, NumPy's generator and JAX's
threefry draw networks from one distribution, so their Monte Carlo means agree
within their standard errors."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings

from infkernel.ops import REGISTRY
from infkernel.testing import op_groups, spec_and_inputs

ROOT = Path(__file__).resolve().parents[1]
OPS = sorted(set(REGISTRY) - {"input"})
N_GROUPS = 3
GROUPS = op_groups(N_GROUPS)
COMBOS = [(dtype, rng) for dtype in ("float64", "float32") for rng in ("numpy", "threefry")]

CHILD = r"""
import json, sys, warnings
import numpy as np
import jax
import infkernel as ik
from infkernel.finite import empirical_kernels, host_key
cases, combos = json.load(open(sys.argv[1]))
out = []
for spec, x1 in cases:
    x1 = np.asarray(x1)
    row = {}
    for dtype, rng in combos:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mc = ik.monte_carlo(spec, x1, width=16, n_samples=12, seed=1, dtype=dtype, rng=rng)
            # one network through the other entry point (its own jit), where the crash was
            one = (empirical_kernels(spec, x1, width=16, seed=2, dtype=dtype, rng=rng)
                   if [dtype, rng] == list(combos[0]) else mc.mean)
        assert mc.mean.ntk.dtype == np.float64 and one.ntk.dtype == np.float64
        row[f"{dtype}/{rng}"] = [mc.mean.nngp.tolist(), mc.mean.ntk.tolist(), mc.sem.nngp.tolist(),
                                 mc.sem.ntk.tolist(), bool(np.isfinite(one.ntk).all() and np.isfinite(one.nngp).all())]
    out.append(row)
# 64 random bits from the NumPy generator under x64: both words used, uniform.
with jax.enable_x64(True):
    bits = np.asarray(jax.random.bits(host_key(3), (4000,), dtype="uint64"))
    normal = np.asarray(jax.random.normal(host_key(3), (20000,), dtype="float64"))
assert bits.dtype == np.uint64
hi, lo = bits >> np.uint64(32), bits & np.uint64(0xFFFFFFFF)
assert not np.array_equal(hi, lo)
for half in (hi, lo):
    u = half.astype(np.float64) / 2.0**32
    assert abs(u.mean() - 0.5) < 0.03 and abs(u.std() - 12 ** -0.5) < 0.03, (u.mean(), u.std())
assert normal.dtype == np.float64 and abs(normal.mean()) < 0.03 and abs(normal.std() - 1) < 0.03
print("RESULT" + json.dumps(out))
"""


def _cases() -> list:
    """One random spec and inputs per group of ops (deterministic draws)."""
    cases = []
    for group in GROUPS:
        @settings(max_examples=1, database=None, derandomize=True)
        @given(spec_and_inputs(include=group, max_layers=2, max_extra=1, n1=(2, 2)))
        def draw(case):
            spec, x1, _ = case
            cases.append((spec, np.asarray(x1).tolist()))

        draw()
    return cases


def _env(**extra) -> dict:
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
            "JAX_PLATFORMS": "cpu", **extra}


def _combos(x64: bool, first: str) -> list:
    combos = sorted(COMBOS, key=lambda c: c[0] != first)
    if x64:  # with x64 on everywhere only the NumPy generator's callback differs; keep the run short
        combos = [c for c in combos if c[1] == "numpy"] + [("float32", "threefry")]
    return combos


PARAMS = [(False, "float64"), (True, "float32")]
ISSUE_CODE = ("import numpy as np, infkernel as ik\n"
              "x = np.random.default_rng(0).normal(size=(3, 3))\n"
              "mc = ik.monte_carlo('input 3\\ndense\\nrelu\\ndense\\n', x, width=64, n_samples=8, dtype='float64')\n"
              "k = ik.compile('input 3\\ndense\\nrelu\\ndense\\n')(x, dtype='float64')\n"
              "z = np.abs(mc.mean.ntk - k.ntk) / mc.sem.ntk\n"
              "assert np.isfinite(mc.mean.ntk).all() and z.max() < 6, z\n"
              "print('ok')\n")


@pytest.fixture(scope="module")
def children(tmp_path_factory):
    """Every fresh interpreter of this module, started at once (each its own process, so
    each still starts fresh; together they keep both cores busy): ({name: (Popen, out, err)}, cases),
    out and err the files the process writes (not pipes: a full pipe would stall it)."""
    tmp = tmp_path_factory.mktemp("mc_dtypes")
    cases = _cases()
    procs = {}

    def start(name, argv, env):
        out, err = (tmp / f"{len(procs)}.{kind}" for kind in ("out", "err"))
        with open(out, "w") as o, open(err, "w") as e:
            procs[name] = subprocess.Popen(argv, stdout=o, stderr=e, text=True, env=env), out, err

    for x64, first in PARAMS:
        path = tmp / f"cases-{x64}.json"
        path.write_text(json.dumps([cases, _combos(x64, first)]))
        start(("dtypes", x64), [sys.executable, "-c", CHILD, str(path)], _env(JAX_ENABLE_X64="1" if x64 else "0"))
    start("issue", [sys.executable, "-c", ISSUE_CODE], _env())
    spec = tmp / "net.ik"
    spec.write_text("input 3\ndense\nrelu\ndense\n")
    start("cli", [sys.executable, "-m", "infkernel.cli", "mc", str(spec), "--dtype", "float64", "--width", "32",
                  "--samples", "4"], _env())
    yield procs, cases
    for proc, _, _ in procs.values():  # a test that failed early leaves none running
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _finished(started) -> tuple[int, str, str]:
    proc, out, err = started
    proc.wait(timeout=600)
    return proc.returncode, out.read_text(), err.read_text()


@pytest.mark.parametrize("x64, first", PARAMS, ids=["x64-off-float64-first", "x64-on-float32-first"])
def test_every_dtype_generator_and_op_in_a_fresh_interpreter(children, x64, first):
    procs, cases = children
    code, out, err = _finished(procs["dtypes", x64])
    assert code == 0, err[-3000:]
    line = next(line for line in out.splitlines() if line.startswith("RESULT"))
    rows = json.loads(line[len("RESULT"):])
    for (spec, _), row in zip(cases, rows):
        ref = row["float32/threefry"]
        for name, (nngp, ntk, sem_nngp, sem_ntk, finite) in row.items():
            assert finite, (name, spec)
            for mean, sem, ref_mean, ref_sem in ((nngp, sem_nngp, ref[0], ref[2]), (ntk, sem_ntk, ref[1], ref[3])):
                mean, sem, ref_mean, ref_sem = map(np.asarray, (mean, sem, ref_mean, ref_sem))
                assert np.isfinite(mean).all(), (name, spec)
                if name == "float32/threefry":
                    continue
                # Same distribution: independent means agree within their errors.
                scale = np.abs(ref_mean).max()
                z = np.abs(mean - ref_mean) / (np.sqrt(sem ** 2 + ref_sem ** 2) + 1e-6 * scale)
                assert z.max() < 6, (name, spec, z.max())


def test_issue_example_and_cli_in_float64(children):
    """The issue's call and `infkernel mc --dtype float64`, each in a fresh interpreter."""
    procs, _ = children
    code, out, err = _finished(procs["issue"])
    assert code == 0 and "ok" in out, err[-3000:]
    code, out, err = _finished(procs["cli"])
    assert code == 0, err[-3000:]
    assert "ntk" in out and "nan" not in out.lower()
