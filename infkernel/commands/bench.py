"""`infkernel bench [WORKLOAD ...]`: time the engine on the benchmark workloads.

Each measurement runs in a fresh process (peak memory is that process's own):
one call that compiles, then the median of `--repeats` calls of K(X, X), nngp
and ntk, float32. With `--peer PYTHON` (the interpreter of the neural-tangents
venv, see ../shared/peer/setup.sh) the reference runs on the same inputs, and
the speedup and the largest relative difference of the kernels are printed;
`--rounds R` alternates the two R times per workload (fresh processes) and
prints the medians, and each round's seconds and speedup.
`--compile-depth` times compiling a 10- and a 100-layer ReLU network instead.

Roofline columns: first the machine's own peaks are measured in a fresh
process (a float32 matmul, a streaming loop; `--no-peaks` skips them), then
each workload prints its CPU time (all threads: robust to other load on the
machine), its GFLOP/s and GB/s (work counted from the rules, see
`infkernel.roofline`), each as a percentage of the peak, and "x bound": its
time over max(flops / matmul peak, bytes / streaming peak).
"""
from __future__ import annotations

import os
import sys
import tempfile

from .. import bench
from ..errors import SpecError


def add_arguments(parser) -> None:
    parser.add_argument("workloads", nargs="*", metavar="WORKLOAD[:N]",
                        help=f"any of {', '.join(bench.WORKLOADS)} (default: all), each optionally with its"
                             " own n, e.g. cnn-flatten:128")
    parser.add_argument("--n", type=int, default=None, help="examples (default: the workload's n)")
    parser.add_argument("--peer", metavar="PYTHON", default=None,
                        help="python of the neural-tangents venv: also run the reference and compare")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls after the compiling one (median)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="with --peer: measure each workload this many times, alternating infkernel and "
                             "neural-tangents in fresh processes; medians of the rounds (on a noisy machine)")
    parser.add_argument("--memory", default=None, help="memory budget of the engine, e.g. 1GB")
    parser.add_argument("--compile-depth", action="store_true",
                        help="time compiling a 10- and a 100-layer ReLU network (repeat -> lax.scan)")
    parser.add_argument("--no-peaks", action="store_true",
                        help="do not measure the machine's matmul and streaming peaks first")
    parser.add_argument("--timeout", type=float, default=None, help="seconds allowed per measurement")
    parser.add_argument("--x64-reference", action="store_true",
                        help="with --peer: also run neural-tangents in float64 and print each float32 kernel's "
                             "largest relative difference from it")


def _workload(item: str, n: int | None) -> tuple[str, int]:
    """("cnn-flatten", 128) from "cnn-flatten:128"; without ":N", --n or the
    workload's default. Unknown names fail here, before any work."""
    name, sep, count = item.partition(":")
    bench.spec_path(name)
    if sep:
        if not count.isdigit() or int(count) < 1:
            raise SpecError(f"cannot read {item!r}", hint="write WORKLOAD:N with N a positive integer, e.g. cnn-flatten:128")
        return name, int(count)
    return name, n or bench.default_n(name)


def _say(text: str) -> None:
    print(text, flush=True)


def run(args) -> int:
    if args.compile_depth:
        times = bench.run_compile_depth(timeout=args.timeout)
        for depth, seconds in times.items():
            _say(f"depth {depth:>4}: compile {seconds:.2f} s")
        _say(f"ratio 100/10: {times[100] / times[10]:.2f}")
        return 0
    runs = [_workload(item, args.n) for item in args.workloads or bench.WORKLOADS]
    if args.repeats < 1 or args.rounds < 1 or (args.n is not None and args.n < 1):
        raise SpecError("--n, --repeats and --rounds must be positive")
    if args.peer and not os.path.exists(args.peer):
        raise SpecError(f"--peer: no interpreter at {args.peer}", hint="run bash ../shared/peer/setup.sh")
    if args.peer and not (bench.peer_dir() / "nt_bench.py").exists():  # before any work, not after ours
        raise SpecError(f"cannot find {bench.peer_dir() / 'nt_bench.py'}",
                        hint="set INFKERNEL_PEER_DIR to the folder of nt_bench.py")
    if args.x64_reference and not args.peer:
        raise SpecError("--x64-reference needs --peer (the float64 reference is neural-tangents')")
    peaks = None if args.no_peaks else bench.run_peaks(args.timeout)
    if peaks:
        _say(bench.peaks_line(peaks))
    _say(bench.HEADER)
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name, n in runs:
            ours_file = os.path.join(tmp, f"{name}.ik.npz") if args.peer else None
            peer_file = os.path.join(tmp, f"{name}.nt.npz")
            rounds, peers = [], []
            try:
                for _ in range(args.rounds if args.peer else 1):
                    rounds.append(bench.run_infkernel(name, n, args.repeats, args.memory, ours_file, args.timeout))
                    if args.peer:
                        peers.append(bench.run_peer(args.peer, name, n, peer_file, args.timeout))
            except RuntimeError as e:
                print(f"{name}: {e}", file=sys.stderr)
                failed += 1
                if not rounds or (args.peer and not peers):
                    continue
            ours = bench.median_result(rounds)
            if not args.peer or not peers:
                _say(bench.row(ours, peaks=peaks))
                continue
            peer = bench.median_result(peers)
            _say(bench.row(ours, peer, bench.compare(ours_file, peer_file), peaks))
            if len(peers) > 1:
                _say(f"{name}: {len(peers)} rounds, seconds infkernel "
                     + " ".join(f"{r.seconds:.3g}" for r in rounds) + ", neural-tangents "
                     + " ".join(f"{r.seconds:.3g}" for r in peers)
                     + ", speedup per round " + " ".join(f"{p.seconds / r.seconds:.1f}x" for r, p in zip(rounds, peers)))
            if args.x64_reference:
                reference_file = os.path.join(tmp, f"{name}.nt64.npz")
                try:
                    bench.run_peer(args.peer, name, n, reference_file, args.timeout, x64=True)
                except RuntimeError as e:
                    print(f"{name}: neural-tangents float64: {e}", file=sys.stderr)
                    failed += 1
                    continue
                _say(bench.reference_line(name, ours_file, reference_file, peer_file))
    return 1 if failed else 0
