"""Throughput of the in-process engine against local Dask clusters, and a
kill/resume of a Zarr store, side by side in one run.

    python benchmarks/cluster.py                 # CNTK-GAP (5 conv, GAP) on 96 random 8x8x3 images
    python benchmarks/cluster.py --n 64 --side 16 --json

Rows: the default in-process engine (a stream of pairs, in memory); the
in-process tile runner writing a Zarr store; Dask with 1 and 2 local worker
processes (127.0.0.1) writing a Zarr store. "warm s" is a second run (compiled
functions kept: in this process, or by each worker), "cold s" the first one,
including starting the cluster and compiling. Then `infkernel kernel ...
--workers 2 --out K.zarr` is killed (SIGKILL to its process group: the client
and its workers) a third of the way through and run again: how many tiles
were done, in flight, and recomputed.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import infkernel as ik  # noqa: E402

SPEC = """input 8x8x3
parameterization ntk
repeat 5:
    conv 3x3 same w_std=sqrt(2)
    relu
gap
dense w_std=1
"""


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def throughput(n: int, side: int, folder: Path) -> list[dict]:
    from distributed import Client, LocalCluster
    kfn = ik.compile(SPEC)
    x = np.random.default_rng(0).standard_normal((n, 8, 8, 3)).astype(np.float32)
    rows = []

    def row(name, run):
        cold, k = timed(lambda: run("cold"))
        warm, k = timed(lambda: run("warm"))
        rows.append({"runner": name, "cold_s": cold, "warm_s": warm, "entries_per_s": n * n / warm})
        print(f"{name}: cold {cold:.1f} s, warm {warm:.2f} s", file=sys.stderr)
        return k

    ref = row("in-process, default engine (memory)", lambda tag: kfn(x, progress=False))
    local = row("in-process, tiles -> Zarr", lambda tag: kfn(x, out=folder / f"local-{tag}.zarr", batch_size=side,
                                                             progress=False))
    for workers in (1, 2):
        started = time.perf_counter()
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR)
        client = Client(cluster)
        start = time.perf_counter() - started
        k = row(f"Dask, {workers} local worker{'s' * (workers > 1)} -> Zarr",
                lambda tag: kfn(x, out=folder / f"dask{workers}-{tag}.zarr", batch_size=side, scheduler=client,
                                progress=False))
        rows[-1]["cold_s"] += start
        assert np.array_equal(k.ntk[:], local.ntk[:]) and np.array_equal(k.nngp[:], local.nngp[:])
        client.close()
        cluster.close()
    worst = float(np.abs(local.ntk[:] - ref.ntk).max() / np.abs(ref.ntk).max())
    for r in rows:
        r["max_rel_diff_ntk_vs_default"] = worst if "tiles" in r["runner"] or "Dask" in r["runner"] else 0.0
    return rows


def kill_resume(n: int, side: int, folder: Path, fraction: float = 1 / 3) -> dict:
    import zarr
    (folder / "net.ik").write_text(SPEC)
    x = np.random.default_rng(0).standard_normal((n, 8, 8, 3)).astype(np.float32)
    np.save(folder / "x.npy", x)
    out = folder / "K.zarr"
    cmd = [sys.executable, "-m", "infkernel.cli", "kernel", str(folder / "net.ik"), "--x1", str(folder / "x.npy"),
           "--out", str(out), "--batch-size", str(side), "--workers", "2", "--quiet"]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    k = -(-n // side)
    total = k * (k + 1) // 2

    def done():
        try:
            return int((zarr.open_group(out, mode="r")["done"][:] > 0).sum())
        except Exception:
            return 0

    first = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    t0 = time.perf_counter()
    while done() < total * fraction and first.poll() is None:
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)  # the client and its local cluster, no clean-up
    first.wait()
    killed_after = time.perf_counter() - t0
    time.sleep(1.0)
    group = zarr.open_group(out, mode="r")
    done1 = group["done"][:] > 0
    lost = (group["started"][:] > 0) & ~done1
    resumed = time.time()
    second, proc = timed(lambda: subprocess.run(cmd, env=env, capture_output=True, text=True))
    assert proc.returncode == 0, proc.stderr[-2000:]
    again = group["started"][:] >= resumed
    return {"tiles": total, "killed_after_s": killed_after, "done_at_kill": int(done1.sum()),
            "in_flight_at_kill": int(lost.sum()), "recomputed": int((again & lost).sum()),
            "computed_by_resume": int(again.sum()), "resume_s": second, "resume_output": proc.stdout.strip()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=96)
    parser.add_argument("--side", type=int, default=16, help="tile side (batch_size)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        rows = throughput(args.n, args.side, Path(tmp))
        resume = kill_resume(args.n, args.side, Path(tmp))
    result = {"n": args.n, "side": args.side, "cpus": os.cpu_count(), "load_before": load,
              "load_after": os.getloadavg(), "rows": rows, "kill_resume": resume}
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"CNTK-GAP 5 conv 8x8x3, n = {args.n}, tiles {args.side}x{args.side}, {os.cpu_count()} CPUs, "
          f"load average {load[0]:.1f} before, {result['load_after'][0]:.1f} after")
    print("| runner | cold s | warm s | entries/s (warm) |\n|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['runner']} | {r['cold_s']:.1f} | {r['warm_s']:.2f} | {r['entries_per_s']:.0f} |")
    print(json.dumps(resume))
    return 0


if __name__ == "__main__":
    sys.exit(main())
