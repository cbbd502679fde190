"""Benchmarks of the engine on the workloads of the reference comparison.

Each workload is a spec file kept in the package (`infkernel/bench_specs/`)
and the inputs numpy.random.default_rng(0).standard_normal((n,) + shape) in
float32, as in `../shared/peer/workloads.json`. Every measurement runs in a
fresh Python process, so that its peak memory (ru_maxrss) is its own:

- infkernel: one call that compiles, then `repeats` timed calls of
  K(X, X) with both nngp and ntk; the median is reported, compile time apart
  (first call minus the median);
- the machine's peaks (`infkernel.roofline.peaks`: a float32 matmul and a
  streaming elementwise loop), in their own process of the same run, so that
  each workload's GFLOP/s and GB/s (its work counted statically from the
  rules, see `infkernel.roofline`) can be read against them;
- neural-tangents (with `peer`, an interpreter of the venv that
  `../shared/peer/setup.sh` builds): `nt_bench.py` of the peer folder, whose
  timed call follows a warm-up call; its kernel is saved and compared.

The peer folder is $INFKERNEL_PEER_DIR, or `../shared/peer` beside the
checkout that holds this package.

    python -m infkernel.bench cnn-gap --peer ~/.cache/nt-peer-venv/bin/python
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from .errors import SpecError

WORKLOADS = ("fc-deep", "cnn-gap", "cnn-flatten", "myrtle5", "attention")
DEFAULT_N = {"fc-deep": 2048, "cnn-gap": 64, "cnn-flatten": 256, "myrtle5": 16, "attention": 128}
PACKAGE = Path(__file__).resolve().parent


def spec_path(name: str) -> Path:
    path = PACKAGE / "bench_specs" / f"{name}.ik"
    if not path.exists():
        raise SpecError(f"unknown workload {name!r}", hint=f"expected one of {', '.join(WORKLOADS)}")
    return path


def peer_dir() -> Path:
    """Folder of nt_bench.py and workloads.json: $INFKERNEL_PEER_DIR or ../shared/peer."""
    env = os.environ.get("INFKERNEL_PEER_DIR")
    return Path(env) if env else PACKAGE.parent.parent / "shared" / "peer"


def default_n(name: str) -> int:
    try:
        return int(json.loads((peer_dir() / "workloads.json").read_text())[name]["n"])
    except (OSError, KeyError, ValueError):
        return DEFAULT_N[name]


def inputs(shape, n: int):
    import numpy as np
    return np.random.default_rng(0).standard_normal((n,) + tuple(shape)).astype(np.float32)


@dataclass
class Result:
    impl: str
    workload: str
    n: int
    seconds: float  # median of the timed calls (neural-tangents: its one timed call)
    compile_seconds: float  # first call minus `seconds`
    peak_mb: float  # peak resident memory of the whole process
    times: list = field(default_factory=list)
    layout: str = ""
    cpu_seconds: float = 0.0  # median CPU time of the process over the timed calls (all threads)
    flops: float = 0.0  # of the whole K(X, X), counted from the rules (infkernel.roofline)
    bytes: float = 0.0  # covariance arrays read and written, all nodes, all pairs

    @property
    def gflops(self) -> float:
        return self.flops / self.seconds / 1e9

    @property
    def gbs(self) -> float:
        return self.bytes / self.seconds / 1e9

    @property
    def entries_per_second(self) -> float:
        return self.n * self.n / self.seconds


# -- running in a fresh process ----------------------------------------------------------

def _env() -> dict:
    env = dict(os.environ)
    root = str(PACKAGE.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return env


def _run(cmd: list[str], timeout: float | None = None) -> tuple[str, float]:
    """stdout of cmd and its peak resident memory in MB (its own, via wait4)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=_env())
        started = time.monotonic()
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if timeout is not None and time.monotonic() - started > timeout:
                proc.kill()
                os.wait4(proc.pid, 0)
                raise RuntimeError(f"{' '.join(cmd[:4])} ... took longer than {timeout:.0f} s")
            time.sleep(0.05)
        out.seek(0)
        err.seek(0)
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            tail = err.read()[-2000:]
            raise RuntimeError(f"{' '.join(cmd[:4])} ... failed with status {code}:\n{tail}")
        return out.read(), usage.ru_maxrss / 1024  # Linux: kilobytes


def run_infkernel(name: str, n: int, repeats: int = 3, memory=None, save: str | None = None,
                  timeout: float | None = None) -> Result:
    cmd = [sys.executable, "-m", "infkernel.bench", "--worker", name, str(n), "--repeats", str(repeats)]
    if memory is not None:
        cmd += ["--memory", str(memory)]
    if save:
        cmd += ["--save", save]
    stdout, peak = _run(cmd, timeout)
    data = json.loads(stdout.strip().splitlines()[-1])
    return Result("infkernel", name, n, data["seconds"], data["compile_seconds"], peak, data["times"],
                  data["layout"], data["cpu_seconds"], data["flops"], data["bytes"])


def run_peer(python: str, name: str, n: int, save: str | None = None, timeout: float | None = None,
             x64: bool = False) -> Result:
    """neural-tangents on the workload (float32, or float64 with `x64`: a reference)."""
    script = peer_dir() / "nt_bench.py"
    if not script.exists():
        raise SpecError(f"cannot find {script}", hint="set INFKERNEL_PEER_DIR to the folder of nt_bench.py")
    cmd = [python, str(script), name, "--n", str(n)] + (["--save", save] if save else []) + (["--x64"] if x64 else [])
    stdout, peak = _run(cmd, timeout)
    data = json.loads(stdout.strip().splitlines()[-1])
    return Result("neural-tangents", name, n, data["seconds"], data["first_call_seconds"] - data["seconds"], peak,
                  [data["seconds"]])


def median_result(results: list[Result]) -> Result:
    """Several rounds of one measurement as one: median seconds, CPU and compile
    time, the largest peak memory, every round's seconds in `times`."""
    first = results[0]
    med = lambda get: statistics.median(get(r) for r in results)
    return replace(first, seconds=med(lambda r: r.seconds), compile_seconds=med(lambda r: r.compile_seconds),
                   cpu_seconds=med(lambda r: r.cpu_seconds), peak_mb=max(r.peak_mb for r in results),
                   times=[r.seconds for r in results])


def worker(name: str, n: int, repeats: int, memory, save: str | None) -> dict:
    """The body of one infkernel measurement (runs in the fresh process)."""
    import numpy as np

    from . import roofline
    from .kernel import compile as compile_spec
    kfn = compile_spec(spec_path(name))
    x = inputs(kfn.graph.input_shape, n)
    t0 = time.perf_counter()
    k = kfn(x, memory=memory, progress=False)
    first = time.perf_counter() - t0
    times, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        k = kfn(x, memory=memory, progress=False)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    seconds = statistics.median(times) if times else first
    if save:
        np.savez(save, nngp=k.nngp, ntk=k.ntk)
    layout = kfn.engine.layout
    pairs = roofline.symmetric_pairs(n)
    return {"seconds": seconds, "compile_seconds": max(first - seconds, 0.0), "first_seconds": first,
            "times": times, "layout": f"{layout.mode}: {layout.inner} pairs live, {layout.per_call} per call",
            "cpu_seconds": statistics.median(cpu) if cpu else 0.0,
            "flops": pairs * roofline.program_flops(kfn.program)["flops"],
            "bytes": pairs * roofline.program_bytes(kfn.program)}


def compare(ours: str, theirs: str) -> dict[str, float]:
    """Largest |a - b| / max |b| of each kernel, and of the NTK off its diagonal
    ("ntk off"). On the diagonal neural-tangents' float32 arccos of a
    correlation rounded to just below 1 adds ~1e-4 per ReLU layer to the NTK
    (2.4e-3 on fc-deep against its own float64 kernel), where infkernel's
    angle is exactly 0; off the diagonal both are within ~5e-7 of float64."""
    import numpy as np
    a, b = np.load(ours), np.load(theirs)
    diff = {k: np.abs(a[k].astype(np.float64) - b[k]) / np.abs(b[k]).max() for k in ("nngp", "ntk")}
    off = ~np.eye(*diff["ntk"].shape, dtype=bool)
    return {"nngp": float(diff["nngp"].max()), "ntk": float(diff["ntk"].max()),
            "ntk off": float(diff["ntk"][off].max(initial=0.0))}


def reference_line(name: str, ours: str, reference: str, peer: str | None = None) -> str:
    """The float32 kernels' largest relative differences from neural-tangents' float64 kernel."""
    text = f"{name}: float32 against neural-tangents float64: infkernel " + _diff_text(compare(ours, reference))
    if peer:
        text += "; neural-tangents float32 " + _diff_text(compare(peer, reference))
    return text


def _diff_text(diff: dict) -> str:
    return f"nngp {diff['nngp']:.1e} ntk {diff['ntk']:.1e} (off the diagonal {diff['ntk off']:.1e})"


def run_peaks(timeout: float | None = None) -> dict:
    """The machine's matmul GFLOP/s and streaming GB/s (`roofline.peaks`), in a fresh process."""
    stdout, _ = _run([sys.executable, "-m", "infkernel.bench", "--peaks-worker"], timeout)
    return json.loads(stdout.strip().splitlines()[-1])


def peaks_line(peaks: dict) -> str:
    return (f"machine: float32 matmul {peaks['matmul_gflops']:.0f} GFLOP/s ({peaks['matmul_size']}^2),"
            f" streaming x/2+1/2 in place {peaks['stream_gbs']:.1f} GB/s ({peaks['stream_mib']:.0f} MiB in and out)")


# -- compile time against depth ----------------------------------------------------------

def compile_worker(depth: int) -> dict:
    """Seconds from spec text to the first kernel of a `depth`-layer ReLU network
    (parse, trace, XLA compile, one tiny run), minus the run itself."""
    import numpy as np

    from .kernel import compile as compile_spec
    t0 = time.perf_counter()
    kfn = compile_spec(spec_path("fc-deep"), depth=depth)
    x = inputs(kfn.graph.input_shape, 8)
    kfn(x, progress=False)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    kfn(x, progress=False)
    again = time.perf_counter() - t0
    return {"depth": depth, "seconds": first - again}


def run_compile_depth(depths=(10, 100), timeout: float | None = None) -> dict[int, float]:
    out = {}
    for depth in depths:
        stdout, _ = _run([sys.executable, "-m", "infkernel.bench", "--compile-worker", str(depth)], timeout)
        out[depth] = json.loads(stdout.strip().splitlines()[-1])["seconds"]
    return out


# -- the table -----------------------------------------------------------------------------

HEADER = (f"{'workload':<12} {'n':>5} {'seconds':>8} {'cpu s':>7} {'compile':>8} {'entries/s':>10} {'peak MB':>8}"
          f" | {'GFLOP/s':>8} {'%mm':>5} {'GB/s':>6} {'%bw':>5} {'x bound':>7}"
          f" | {'NT s':>8} {'NT MB':>7} {'speedup':>8} {'diff nngp':>9} {'diff ntk':>9} {'ntk off':>9}")


def roofline_columns(ours: Result, peaks: dict | None) -> str:
    """GFLOP/s and GB/s achieved, as % of the matmul and streaming peaks, and the
    time over the roofline bound max(flops / matmul peak, bytes / streaming peak)."""
    text = f" | {ours.gflops:>8.2f}"
    if peaks is None:
        return text + f" {'':>5} {ours.gbs:>6.2f} {'':>5} {'':>7}"
    bound = max(ours.flops / (peaks["matmul_gflops"] * 1e9), ours.bytes / (peaks["stream_gbs"] * 1e9))
    return (text + f" {100 * ours.gflops / peaks['matmul_gflops']:>4.1f}% {ours.gbs:>6.2f}"
            f" {100 * ours.gbs / peaks['stream_gbs']:>4.1f}% {ours.seconds / bound:>6.1f}x")


def row(ours: Result, peer: Result | None = None, diff: dict | None = None, peaks: dict | None = None) -> str:
    text = (f"{ours.workload:<12} {ours.n:>5} {ours.seconds:>8.3f} {ours.cpu_seconds:>7.2f} {ours.compile_seconds:>8.2f}"
            f" {ours.entries_per_second:>10.3g} {ours.peak_mb:>8.0f}")
    text += roofline_columns(ours, peaks)
    if peer is None:
        return text
    text += f" | {peer.seconds:>8.2f} {peer.peak_mb:>7.0f} {peer.seconds / ours.seconds:>7.1f}x"
    if diff:
        text += f" {diff['nngp']:>9.1e} {diff['ntk']:>9.1e} {diff['ntk off']:>9.1e}"
    return text


def main(argv=None) -> int:
    import argparse
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--peaks-worker" in argv:
        from . import roofline
        print(json.dumps(roofline.peaks()))
        return 0
    if "--worker" in argv or "--compile-worker" in argv:  # one measurement, in a fresh process
        p = argparse.ArgumentParser(prog="python -m infkernel.bench")
        p.add_argument("--worker", nargs=2, metavar=("WORKLOAD", "N"))
        p.add_argument("--compile-worker", type=int, metavar="DEPTH")
        p.add_argument("--repeats", type=int, default=3)
        p.add_argument("--memory")
        p.add_argument("--save")
        a = p.parse_args(argv)
        if a.compile_worker is not None:
            print(json.dumps(compile_worker(a.compile_worker)))
        else:
            print(json.dumps(worker(a.worker[0], int(a.worker[1]), a.repeats, a.memory, a.save)))
        return 0
    from .cli import main as cli_main
    return cli_main(["bench", *argv])


if __name__ == "__main__":
    sys.exit(main())
