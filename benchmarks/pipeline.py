"""The kernel-regression pipeline, timed: load -> K(train, train) -> K(test, train) -> solve -> accuracy.

    python benchmarks/pipeline.py                          # Fashion-MNIST, 10,000 train / 10,000 test, FC ReLU NTK
    python benchmarks/pipeline.py --model vanilla --n-train 1000
    python benchmarks/pipeline.py --table --budget 3600    # the README table, one subprocess per row

One run prints each stage's time and the peak resident memory of the process
after it (and the accelerator's peak when JAX reports one), then the test
accuracy; --json prints the same as one JSON object. --table runs every
(dataset, model) row in its own process, so each peak is that row's alone,
and prints a markdown table; a row that exceeds --budget seconds is reported
as such. Kernel models use ridge="auto" (leave-one-out over
infkernel.predict.default_ridges) and t = inf. Baselines: scikit-learn's SVC
(RBF, gamma="scale", C=10) and RidgeClassifierCV on the pixels.
"""
from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from infkernel import datasets  # noqa: E402
from infkernel.predict import kernel_regression, one_hot_targets  # noqa: E402

DEPTH = 3
# Convolutional NTKs (depth and shape filled in per run): 3x3 conv + ReLU blocks, then a readout.
CNTK = """input {{shape}}
parameterization ntk
{prefix}repeat {{depth}}:
    conv 3x3 same w_std=sqrt(2) b_std=0
    relu
{readout}
dense w_std=1 b_std=0
"""
SPECS = {
    # Fully connected ReLU network (He initialization), its input size from the data.
    "fc": """let d = 784
input d
parameterization ntk
repeat {depth}:
    dense w_std=sqrt(2) b_std=0.1
    relu
dense w_std=1 b_std=0
""",
    # CNTK-V of Arora et al. 2019: 3x3 convolutions, read out from the flattened features.
    "vanilla": CNTK.format(prefix="", readout="flatten"),
    # CNTK-GAP of Arora et al. 2019: the same with global average pooling (pairs of positions).
    "pooled": CNTK.format(prefix="", readout="gap"),
    # The same on images average-pooled 4x4 first (28x28 -> 7x7): (HW)^2 pairs of
    # positions per pair of images fall 256-fold, what a CPU can afford on Fashion-MNIST.
    "pooled-7x7": CNTK.format(prefix="avgpool 4x4\n", readout="gap"),
}
BASELINES = ("rbf-svm", "ridge")
MODELS = tuple(SPECS) + BASELINES
TABLE_DATA = {"digits": ("digits", None), "fashion-1k": ("fashion-mnist", 1000), "fashion-10k": ("fashion-mnist", 10000)}


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def device_peak_gb() -> float | None:
    import jax

    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return None if peak is None else peak / 2**30


class Stages:
    """Wall time and peak resident memory at the end of each stage."""

    def __init__(self):
        self.rows: list[dict] = []

    def run(self, name: str, fn, *args, **kwargs):
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        self.rows.append({"stage": name, "seconds": time.perf_counter() - start, "peak_rss_gb": peak_rss_gb()})
        print(f"  {name:<14} {self.rows[-1]['seconds']:9.2f} s   peak RSS {self.rows[-1]['peak_rss_gb']:.2f} GB",
              file=sys.stderr, flush=True)
        return out


def load(args) -> datasets.Dataset:
    data = datasets.load(args.data)
    return datasets.subset(data, args.n_train, args.n_test, args.seed)


def kernel_model(args, data, stages: Stages) -> tuple[np.ndarray, dict]:
    import infkernel as ik

    shape = "x".join(map(str, data.x_train.shape[1:]))
    kfn = ik.compile(SPECS[args.model].format(depth=args.depth, shape=shape),
                     **({"d": math.prod(data.x_train.shape[1:])} if args.model == "fc" else {}))
    dims = tuple(kfn.graph.input_shape)
    x_train, x_test = (datasets.reshape_for(x, dims) for x in (data.x_train, data.x_test))
    kw = dict(get=args.kernel, dtype=args.dtype, progress=None)
    k_train = getattr(stages.run("kernel train", kfn, x_train, **kw), args.kernel)
    k_test = getattr(stages.run("kernel test", kfn, x_test, x_train, **kw), args.kernel)
    classes, targets = one_hot_targets(data.y_train)
    fit = stages.run("solve", kernel_regression, k_train, targets, k_test, args.t, ridge=args.ridge)
    return classes[np.argmax(fit.mean, axis=1)], {"ridge": fit.ridge}


def baseline(args, data, stages: Stages) -> tuple[np.ndarray, dict]:
    from sklearn.linear_model import RidgeClassifierCV
    from sklearn.svm import SVC

    x_train, x_test = (x.reshape(len(x), -1) for x in (data.x_train, data.x_test))
    model = SVC(kernel="rbf", C=10.0, gamma="scale") if args.model == "rbf-svm" else RidgeClassifierCV(np.logspace(-3, 3, 13))
    stages.run("fit", model.fit, x_train, data.y_train)
    predicted = stages.run("predict", model.predict, x_test)
    return predicted, ({"ridge": float(model.alpha_)} if args.model == "ridge" else {})


def one(args) -> dict:
    stages = Stages()
    data = stages.run("load", load, args)
    print(f"{args.model} on {data.name}: {len(data.x_train)} train / {len(data.x_test)} test", file=sys.stderr)
    run = baseline if args.model in BASELINES else kernel_model
    predicted, extra = run(args, data, stages)
    result = {
        "data": data.name, "model": args.model, "n_train": len(data.x_train), "n_test": len(data.x_test),
        "accuracy": float(np.mean(predicted == data.y_test)), "stages": stages.rows,
        "seconds": sum(r["seconds"] for r in stages.rows[1:]), "peak_rss_gb": peak_rss_gb(), **extra,
    }
    if args.model not in BASELINES:
        result.update(kernel=args.kernel, dtype=args.dtype, t=args.t, device_peak_gb=device_peak_gb())
    return result


def table(args) -> list[dict]:
    rows = []
    for data, n_train in (TABLE_DATA[name] for name in args.rows):
        for model in args.models:
            argv = [sys.executable, __file__, "--json", "--data", data, "--model", model, "--kernel", args.kernel,
                    "--dtype", args.dtype, "--depth", str(args.depth)]
            argv += ["--n-train", str(n_train)] if n_train else []
            start = time.perf_counter()
            try:
                done = subprocess.run(argv, capture_output=True, text=True, timeout=args.budget)
                row = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else {
                    "error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
            except subprocess.TimeoutExpired:
                row = {"error": f"over the {args.budget:g} s budget"}
            row.setdefault("data", data), row.setdefault("model", model), row.setdefault("n_train", n_train)
            row["wall_s"] = time.perf_counter() - start
            print(json.dumps(row), file=sys.stderr, flush=True)
            rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| data | train | test | model | accuracy | time (s) | peak RSS (GB) |", "|---|---:|---:|---|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['data']} | {r.get('n_train') or 'all'} | | {r['model']} | — ({r['error']}) | | |")
        else:
            lines.append(f"| {r['data']} | {r['n_train']} | {r['n_test']} | {r['model']} | {r['accuracy']:.4f} "
                         f"| {r['seconds']:.1f} | {r['peak_rss_gb']:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="fashion-mnist", help="as for `infkernel fit --data`")
    p.add_argument("--n-train", type=int, default=10000)
    p.add_argument("--n-test", type=int, default=None, help="default: the whole test split")
    p.add_argument("--model", choices=MODELS, default="fc")
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS), help="models of --table")
    p.add_argument("--rows", nargs="+", choices=tuple(TABLE_DATA), default=list(TABLE_DATA), help="datasets of --table")
    p.add_argument("--kernel", choices=("nngp", "ntk"), default="ntk")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float64")
    p.add_argument("--depth", type=int, default=DEPTH)
    p.add_argument("--t", type=float, default=math.inf)
    p.add_argument("--ridge", default="auto", type=lambda s: s if s == "auto" else float(s))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("--table", action="store_true", help="every row of the README table, each in its own process")
    p.add_argument("--budget", type=float, default=3600.0, help="seconds per --table row")
    args = p.parse_args(argv)
    if args.table:
        print(markdown(table(args)))
        return 0
    result = one(args)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"accuracy {result['accuracy']:.4f}   total {result['seconds']:.1f} s (after loading)   "
              f"peak RSS {result['peak_rss_gb']:.2f} GB" + (f"   ridge {result['ridge']:.3g}" if "ridge" in result else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
