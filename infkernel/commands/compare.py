"""`infkernel compare SPEC --data digits --widths 64,256,1024`: lazy versus feature learning.

Trains finite networks of the spec at several widths (full-batch gradient
descent, or SGD with --batch-size) on MSE, in the ntk, standard or muP
parameterization with Chizat et al.'s output scale alpha, and measures how far
each leaves its kernel: the relative movement of its empirical NTK and of its
parameters, kernel-target alignment, train and test loss, and the distance of
its test predictions to the infinite-width NTK prediction at the same time
t = lr * step. Prints a table per width, a summary over widths with log-log
slopes, a verdict, and writes a PNG (see `infkernel.training`).
"""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np

from ..datasets import PREPROCESSORS
from ..errors import SpecError
from . import add_spec_arguments, overrides


def _widths(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(w) for w in text.split(",") if w.strip())
    except ValueError:
        widths = ()
    if not widths or min(widths) < 1:
        raise SpecError(f"--widths takes positive integers separated by commas, got {text!r}")
    return tuple(sorted(set(widths)))


def _positive(name: str, value, integer: bool = False):
    ok = value is not None and math.isfinite(value) and value > 0 and (not integer or value == int(value))
    if not ok:
        raise SpecError(f"{name} must be a positive {'integer' if integer else 'number'}, got {value!r}")
    return value


def add_arguments(parser) -> None:
    add_spec_arguments(parser)
    parser.add_argument("--data", default="digits", metavar="DATA",
                        help="digits (default) | fashion-mnist[:DIR] | mnist:DIR | FILE.npz | FILE.csv")
    parser.add_argument("--widths", default="64,256,1024", metavar="W1,W2,...",
                        help="widths of the width-less dense/conv layers (default 64,256,1024)")
    parser.add_argument("--param", choices=("ntk", "standard", "mup"), default=None,
                        help="parameterization (default: the spec's); mup = maximal update (Yang & Hu 2021)")
    parser.add_argument("--alpha", type=float, default=1.0,
                        help="output scale: train alpha*(f - f0) on the loss / alpha^2 (Chizat et al. 2019)")
    parser.add_argument("--steps", type=int, default=400, help="gradient steps (default 400)")
    parser.add_argument("--lr", type=float, default=0.5, help="learning rate; time t = lr * step (default 0.5)")
    parser.add_argument("--batch-size", type=int, default=None, help="SGD batch size (default: full batch)")
    parser.add_argument("--momentum", type=float, default=0.0, help="SGD momentum (default 0)")
    parser.add_argument("--seeds", type=int, default=1, help="initializations averaged per width (default 1)")
    parser.add_argument("--n-train", type=int, default=200, help="class-balanced training subset (default 200)")
    parser.add_argument("--n-test", type=int, default=200, help="class-balanced test subset (default 200)")
    parser.add_argument("--preprocess", choices=tuple(PREPROCESSORS), default="standardize",
                        help="fit on the training split (default standardize)")
    parser.add_argument("--probe", type=int, default=32,
                        help="training examples the empirical NTK and alignment are measured on (default 32)")
    parser.add_argument("--kernel-outputs", type=int, default=1,
                        help="output channels averaged into the empirical NTK (default 1; 0: all)")
    parser.add_argument("--evals", type=int, default=10, help="measurements along training (default 10)")
    parser.add_argument("--base-width", type=int, default=1,
                        help="mup: the width at which it equals ntk (default 1: Yang & Hu's muP)")
    parser.add_argument("--no-center", action="store_true",
                        help="train f itself, not f - f0 (needs --alpha 1)")
    parser.add_argument("--seed", type=int, default=0, help="for the data subsets; seeds are SEED..SEED+seeds-1")
    parser.add_argument("--out", default="compare.png", metavar="PNG", help="the picture (default compare.png)")
    parser.add_argument("--no-plot", action="store_true", help="write no picture")


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(header, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def _f(x: float, digits: int = 4) -> str:
    return "nan" if not np.isfinite(x) else f"{x:.{digits}g}"


def _check_out(path: str) -> None:
    """Refuse a picture file matplotlib cannot write before the training, not after it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    formats = FigureCanvasAgg(Figure()).get_supported_filetypes()
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in formats:
        raise SpecError(f"--out {path}: the picture's name must end in one of "
                        f"{', '.join('.' + f for f in sorted(formats))}", hint="e.g. --out compare.png, or --no-plot")
    if not Path(path).resolve().parent.is_dir():
        raise SpecError(f"--out: folder {Path(path).parent} does not exist")


def run(args) -> int:
    from .. import training
    from ..datasets import load
    from ..kernel import as_graph

    widths = _widths(args.widths)
    if not args.no_plot:
        _check_out(args.out)
    _positive("--lr", args.lr)
    _positive("--alpha", args.alpha)
    _positive("--steps", args.steps, integer=True)
    _positive("--seeds", args.seeds, integer=True)
    _positive("--evals", args.evals, integer=True)
    _positive("--probe", args.probe, integer=True)
    if args.kernel_outputs < 0:
        raise SpecError(f"--kernel-outputs must be >= 0, got {args.kernel_outputs}")
    graph = as_graph(args.spec, **overrides(args))
    start = time.perf_counter()
    data = training.prepare(graph, load(args.data), n_train=args.n_train, n_test=args.n_test,
                            preprocess=args.preprocess, seed=args.seed)
    probe = min(args.probe, len(data.x_train))
    seeds = tuple(range(args.seed, args.seed + args.seeds))
    param = args.param or graph.parameterization
    print(f"{args.spec}: {param} parameterization, alpha {args.alpha:g}, lr {args.lr:g}, {args.steps} steps "
          f"({'full batch' if args.batch_size is None else f'SGD, batch {args.batch_size}'}), "
          f"{len(data.x_train)} train / {len(data.x_test)} test examples of {data.name or args.data}, "
          f"{data.y_train.shape[1]} outputs, {len(seeds)} seed(s)", file=sys.stderr, flush=True)
    cmp = training.compare(graph, data, widths, param, seeds=seeds, alpha=args.alpha, lr=args.lr,
                           steps=args.steps, batch_size=args.batch_size, momentum=args.momentum, evals=args.evals,
                           probe=probe, kernel_outputs=args.kernel_outputs or None, center=not args.no_center,
                           base_width=args.base_width)
    header = ["step", "t", "kernel move", "param move", "alignment", "train loss", "test loss", "NTK test loss",
              "|g - g_NTK|"]
    for w in widths:
        h = cmp.mean(w)
        rows = [[str(s), _f(t), _f(km), _f(pm), _f(al, 3), _f(tr), _f(te), _f(nt), _f(d)]
                for s, t, km, pm, al, tr, te, nt, d in zip(h.step, h.t, h.kernel_movement, h.param_movement,
                                                           h.alignment, h.train_loss, h.test_loss, h.ntk_test_loss,
                                                           h.ntk_distance)]
        note = " (diverged: lower --lr)" if h.diverged else ""
        print(f"\nwidth {w}{note}, {h.seconds:.1f} s\n{_table(header, rows)}")
    summary = []
    for w in widths:
        h = cmp.mean(w)
        summary.append([str(w), _f(h.final("kernel_movement")), _f(h.final("param_movement")),
                        f"{_f(h.alignment[0], 3)} -> {_f(h.final('alignment'), 3)}", _f(h.final("test_loss")),
                        _f(h.final("ntk_test_loss")), _f(h.final("ntk_distance"))])
    ref_align = cmp.reference_alignment.get(widths[-1], math.nan)
    ref_loss = cmp.reference_test_loss.get(widths[-1], [math.nan])[-1]
    summary.append(["inf (NTK)", "0", "0", f"{_f(ref_align, 3)}", _f(ref_loss), _f(ref_loss), "0"])
    slopes = ["slope"] + [_f(cmp.slope(f), 3) for f in ("kernel_movement", "param_movement")] + ["", "", "",
                                                                                                  _f(cmp.slope("ntk_distance"), 3)]
    if len(widths) > 1:
        summary.append(slopes)
    print(f"\nat step {args.steps} (t = {args.lr * args.steps:g}), against width (slope: of log value on log width)")
    print(_table(["width", "kernel move", "param move", "alignment", "test loss", "NTK test loss", "|g - g_NTK|"],
                 summary))
    print(f"\n{cmp.verdict()}")
    if not args.no_plot:
        training.plot(cmp, args.out, title=f"{args.spec}: {param}, alpha={args.alpha:g}, lr={args.lr:g}, "
                                           f"{data.name or args.data} ({len(data.x_train)} train)")
        print(f"wrote {args.out}")
    print(f"total time {time.perf_counter() - start:.1f} s (data, training and reference kernels)", file=sys.stderr)
    return 0
