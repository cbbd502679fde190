"""Where one K(X, X) call spends its time: XLA's fused loops and the host side.

    python benchmarks/profile.py fc-deep                 # n from ../shared/peer/workloads.json
    python benchmarks/profile.py cnn-flatten --n 64 --calls 5 --top 30

Compiles the workload (`infkernel/bench_specs/<name>.ik`), calls it once to
compile, then records `--calls` calls under `jax.profiler.trace` and prints
the total milliseconds per call of every event, the largest first: XLA's
thunks (one per fusion, dot or copy of the optimized HLO, so the names match
`jax.jit(...).lower(...).compile().as_text()`; "ynn_fusion" is a matmul),
the Python functions of the engine (`$local.py:... _run_strips`, numpy's
`asarray` = waiting for the device) and the count of each per call.
On a shared machine read the figures as shares of the call, and compare
variants in one run (docs/performance.md).
"""
from __future__ import annotations

import argparse
import collections
import gzip
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# Thread-pool and profiler plumbing, which only repeats the time of what it runs.
NOISE = ("$threading", "$thread.py", "$_base.py", "$<unknown> acquire", "$profiler", "$contextlib")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("workload")
    p.add_argument("--n", type=int, help="examples (default: the workload's n)")
    p.add_argument("--calls", type=int, default=3)
    p.add_argument("--top", type=int, default=25, help="events to print")
    a = p.parse_args(argv)

    import jax

    from infkernel import bench
    from infkernel.kernel import compile as compile_spec
    kfn = compile_spec(bench.spec_path(a.workload))
    n = a.n or bench.default_n(a.workload)
    x = bench.inputs(kfn.graph.input_shape, n)
    kfn(x, progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        with jax.profiler.trace(tmp, create_perfetto_trace=True):
            for _ in range(a.calls):
                kfn(x, progress=False)
        wall = (time.perf_counter() - t0) / a.calls
        trace = next(Path(tmp).rglob("*.trace.json.gz"))
        data = json.load(gzip.open(trace))
    events = data["traceEvents"] if isinstance(data, dict) else data
    total, count = collections.Counter(), collections.Counter()
    for e in events:
        if e.get("ph") == "X" and not e["name"].startswith(NOISE):
            total[e["name"]] += e.get("dur", 0)
            count[e["name"]] += 1
    print(f"{a.workload} n={n}: {wall * 1e3:.1f} ms per call under the profiler ({a.calls} calls)")
    print(f"{'ms/call':>9} {'count':>6}  event")
    for name, us in total.most_common(a.top):
        print(f"{us / a.calls / 1e3:9.2f} {count[name] / a.calls:6.1f}  {name[:100]}")


if __name__ == "__main__":
    main()
