"""`infkernel fit SPEC --data ...`: kernel regression with a spec's NNGP or NTK on a dataset.

Prints the test accuracy (class labels) or mean squared error (real targets),
with the time spent on kernels and on the solve.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

from ..datasets import PREPROCESSORS, load, preprocess, reshape_for, subset
from ..errors import SpecError
from ..predict import SOLVERS, classes_and_targets, kernel_regression
from . import add_spec_arguments, overrides


def _number(text: str, usage: str, finite: bool) -> float:
    """A number >= 0 from the command line (inf allowed unless `finite`), or a SpecError with `usage`."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value >= 0 and (math.isfinite(value) or not finite)):
        raise SpecError(f"{usage}, got {text!r}")
    return value


def _time(text: str) -> float:
    return _number(text, "--t takes a time >= 0 or inf", finite=False)


def _ridge(text: str):
    return text if text == "auto" else _number(text, "--ridge takes a number >= 0 or auto", finite=True)


def _cv(text: str):
    if text == "loo":
        return text
    if not text.isdigit() or int(text) < 2:
        raise SpecError(f"--cv takes loo or a number of folds >= 2, got {text!r}")
    return int(text)


def add_arguments(parser) -> None:
    add_spec_arguments(parser)
    parser.add_argument("--data", required=True, metavar="DATA",
                        help="digits | fashion-mnist[:DIR] | mnist:DIR | FILE.npz | FILE.csv")
    parser.add_argument("--n-train", type=int, default=None, metavar="N", help="class-balanced training subset")
    parser.add_argument("--n-test", type=int, default=None, metavar="M", help="class-balanced test subset")
    parser.add_argument("--task", choices=("auto", "classification", "regression"), default="auto",
                        help="auto (default): whole-number or string targets are classes, other numbers "
                        "regression targets; the choice and its reason are printed")
    parser.add_argument("--kernel", choices=("nngp", "ntk"), default="ntk",
                        help="ntk: train all layers; nngp: the readout only (at t=inf, the NNGP posterior mean)")
    parser.add_argument("--t", default="inf", metavar="T", help="training time of gradient flow (default inf)")
    parser.add_argument("--ridge", default="auto", metavar="R|auto",
                        help="ridge (weight decay to the initialization), or auto: least cross-validated error")
    parser.add_argument("--cv", default="loo", metavar="loo|K", help="for --ridge auto: leave-one-out or K folds")
    parser.add_argument("--preprocess", choices=tuple(PREPROCESSORS), default="none",
                        help="fit on the training split: standardize, channels (per-channel), zca (regularized)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float64",
                        help="precision of the kernels (default float64): the solve treats eigenvalues below "
                        "n * eps * largest as noise, which for float32 and n in the thousands floors the ridge "
                        "well above its best value")
    parser.add_argument("--seed", type=int, default=0, help="for the subsets and the k folds")
    parser.add_argument("--batch-size", type=int, default=None, help="tile size of the kernel engine")
    parser.add_argument("--memory", default=None, help="memory budget of the kernel engine, e.g. 2GB")
    parser.add_argument("--solver", choices=SOLVERS, default="auto",
                        help="eigh (float64, exact, n up to a few thousand), cholesky (blocked float32 factor with "
                        "float64 refinement), cg (preconditioned conjugate gradients over row blocks), or auto: "
                        "by n and free memory (it says which and why)")
    parser.add_argument("--validation", type=float, default=None, metavar="FRACTION",
                        help="for --ridge auto: choose the ridge on a held-out FRACTION of the training set "
                        "(never the test set) instead of cross-validation")
    parser.add_argument("--kernels", default=None, metavar="DIR",
                        help="write K(train, train) and K(test, train) to memory-mapped .npy files in DIR "
                        "while they are computed (kernels larger than RAM); the solvers read them from there")
    parser.add_argument("--in-place", action="store_true",
                        help="with --kernels and --solver cholesky: factor K(train, train) inside its file (its "
                        "lower triangle becomes the factor, K stays in the upper one) instead of a copy in RAM")
    parser.add_argument("--features", type=_features_arg, default=None, metavar="M",
                        help="approximate the kernel by M random features (infkernel.features) and solve ridge "
                        "in feature space, streaming: O(n M^2); t must be inf, --ridge auto uses a validation split; "
                        "'auto': the largest M within --budget-seconds / --budget-gb (estimated from the rules' "
                        "flop counts and rates measured here)")
    parser.add_argument("--feature-width", type=int, default=None, metavar="W",
                        help="with --features: the hidden random layers' width W (default M); M is then the readout "
                        "dimension (the output layer and projection), e.g. a Myrtle-style spec ending avgpool to 7x7, "
                        "flatten, dense has a readout of 49 W dimensions")
    parser.add_argument("--feature-copies", type=int, default=None, metavar="K",
                        help="with --features: concatenate K independent maps (each / sqrt K): the kernel "
                        "estimate's variance falls like 1/K at K times the cost; for GAP specs, whose readout "
                        "is only about M (docs/features.md, Copies)")
    parser.add_argument("--budget-seconds", type=float, default=None, metavar="S",
                        help="with --features auto: time budget for features and solve")
    parser.add_argument("--budget-gb", type=float, default=None, metavar="GB",
                        help="with --features auto: memory budget (random matrices, a batch, the m x m moments)")
    parser.add_argument("--search", action="append", default=[], metavar="NAME=V1,V2,...",
                        help="choose the spec's let NAME among these values (repeatable: the grid of all "
                        "combinations) on a held-out --validation fraction (default 0.1) of the training set, "
                        "the ridge chosen per candidate; the best is refit on the whole training set and "
                        "evaluated on the test set once")
    parser.add_argument("--search-metric", choices=("accuracy", "mse"), default="accuracy",
                        help="with --search on classes: rank candidates by held-out accuracy (default; ties by "
                        "mse) or by held-out mean squared error (less noisy on a small validation split)")
    parser.add_argument("--search-n-train", type=int, default=5000, metavar="N",
                        help="with --search: the candidates' kernels on a random subsample of N training "
                        "examples (default 5000; the final refit uses all of them)")


def _features_arg(text: str):
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of features or 'auto', got {text!r}") from None


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _with_task(data, task: str):
    """The dataset with targets typed for `task`: int64 classes or float64 regression targets."""
    if task == "regression":
        return data._replace(y_train=data.y_train.astype(np.float64), y_test=data.y_test.astype(np.float64))
    if task == "classification" and not data.is_classification:
        if not all(np.all(y == np.round(y)) for y in (data.y_train, data.y_test)):
            raise SpecError("--task classification needs whole-number or string targets; these have fractions")
        return data._replace(y_train=data.y_train.astype(np.int64), y_test=data.y_test.astype(np.int64))
    return data


def _task_line(data, task: str) -> str:
    """Which task was chosen, and why."""
    if task != "auto":
        return f"task      {task} (--task {task})"
    if not data.is_classification:
        return "task      regression: the targets are real numbers"
    k, n = len(np.unique(data.y_train)), len(data.y_train)
    many = f"; {k} classes for {n} training examples: if they are amounts, not classes, pass --task regression" \
        if k > 20 and k > n / 10 else "; --task regression treats them as numbers"
    return f"task      classification: the targets are whole numbers or strings ({k} distinct values){many}"


def _data(args):
    """The dataset (subset, preprocessed, shaped for the spec) and the compiled kernel.

    A spec whose input line names a let takes its input size from the data.
    """
    from ..kernel import compile as compile_spec
    from ..sklearn import spec_lets

    data = preprocess(subset(_with_task(load(args.data), args.task), args.n_train, args.n_test, args.seed),
                      args.preprocess)
    text, lets = spec_lets(args.spec, math.prod(data.x_train.shape[1:]), overrides(args))
    kfn = compile_spec(text, **dict(lets))
    shape = tuple(kfn.graph.input_shape)
    data = data._replace(x_train=reshape_for(data.x_train, shape), x_test=reshape_for(data.x_test, shape))
    return data, kfn


def _check_options(args) -> None:
    """Refuse, before any work, options that the chosen path would ignore or that conflict."""
    budgets = [name for name, value in (("--budget-seconds", args.budget_seconds), ("--budget-gb", args.budget_gb))
               if value is not None]
    if budgets and args.features != "auto":
        raise SpecError(f"{' and '.join(budgets)} size --features auto and nothing else", hint="pass --features auto")
    if getattr(args, "feature_width", None) is not None and args.features is None:
        raise SpecError("--feature-width sets the hidden width of --features M", hint="pass --features M or auto")
    if getattr(args, "feature_copies", None) is not None and args.features is None:
        raise SpecError("--feature-copies sets the copies of --features M", hint="pass --features M or auto")
    if args.features is not None:
        ignored = [name for name, used in (("--search", bool(args.search)), ("--solver", args.solver != "auto"),
                                           ("--kernels", args.kernels is not None), ("--in-place", args.in_place),
                                           ("--cv", args.cv != "loo"), ("--memory", args.memory is not None))
                   if used]
        if ignored:
            raise SpecError(f"--features solves ridge regression in feature space: {', '.join(ignored)} "
                            "cannot be combined with it", hint=f"drop {', '.join(ignored)}, or --features")
    if args.in_place and (args.kernels is None or args.solver != "cholesky"):
        raise SpecError("--in-place needs --kernels DIR and --solver cholesky")
    if args.validation is not None and not 0 < args.validation < 1:
        raise SpecError(f"--validation takes a fraction between 0 and 1, got {args.validation}")


def _check_classes(data) -> None:
    """Classification needs two classes in the training set (one class gives all-zero targets: every
    prediction is that class, whatever the kernel); test classes the training set lacks are said."""
    train, test = np.unique(data.y_train), np.unique(data.y_test)
    if len(train) < 2:
        raise SpecError(f"the {len(data.y_train)} training examples hold {len(train)} class ({train[0].item()!r}); "
                        "classification needs at least 2",
                        hint="raise --n-train to at least the number of classes, or pass --task regression")
    missing = np.setdiff1d(test, train)
    if len(missing):
        _say(f"note: {len(missing)} of the test set's {len(test)} classes are absent from the training set "
             f"({', '.join(map(str, missing[:10]))}{', ...' if len(missing) > 10 else ''}): their test examples "
             "are always misclassified")


def run(args) -> int:
    t, ridge, cv = _time(args.t), _ridge(args.ridge), _cv(args.cv)
    _check_options(args)
    data, kfn = _data(args)
    classes = data.is_classification
    shape = "x".join(map(str, data.x_train.shape[1:]))
    labels = f", {len(np.unique(data.y_train))} classes" if classes else ""
    print(f"data      {data.name}: {len(data.x_train)} train, {len(data.x_test)} test, input {shape}{labels}")
    print(_task_line(data, args.task))
    if classes:
        _check_classes(data)
    if args.features is not None:
        from ..features.cli import run_features
        return run_features(args, data, kfn.graph, t, ridge)

    if args.search:
        kfn, ridge = _search(args, data, t, ridge)
    kw = dict(get=args.kernel, dtype=args.dtype, batch_size=args.batch_size, memory=args.memory, progress=None)
    out = (lambda name: None) if args.kernels is None else (lambda name: str(Path(args.kernels) / name))
    if args.kernels is not None:
        Path(args.kernels).mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    _say(f"kernel: K(train, train), {len(data.x_train)}^2 pairs")
    validation = None if args.search else args.validation
    k_train = getattr(kfn(data.x_train, **kw, out=out("train")), args.kernel)
    if args.in_place:
        k_train = np.load(Path(args.kernels) / f"train.{args.kernel}.npy", mmap_mode="r+")
    _say(f"kernel: K(test, train), {len(data.x_test)} x {len(data.x_train)} pairs")
    k_test = getattr(kfn(data.x_test, data.x_train, **kw, out=out("test")), args.kernel)
    kernel_s = time.perf_counter() - start
    print(f"kernel    {args.kernel}, {args.dtype}: {kernel_s:.2f} s")

    start = time.perf_counter()
    class_names, targets = classes_and_targets(data.y_train) if classes else (None, data.y_train)
    result = kernel_regression(k_train, targets, k_test, t, ridge=ridge, cv=cv, seed=args.seed, solver=args.solver,
                               validation=validation, progress=True,
                               **({"overwrite": True} if args.in_place else {}))
    mean, ridge = result
    solve_s = time.perf_counter() - start
    print(f"solver    {result.solver} ({result.reason})")
    details = result.details.replace("ridge given", "ridge chosen by the search", 1) if args.search else result.details
    print(f"solve     ridge {ridge:.3g} ({details}), t {t:g}: {solve_s:.2f} s")
    if classes:
        accuracy = float(np.mean(class_names[np.argmax(mean, axis=1)] == data.y_test))
        print(f"accuracy  {accuracy:.4f}")
    else:
        print(f"mse       {float(np.mean((mean - data.y_test) ** 2)):.6g}")
    print(f"memory    peak resident {_peak_gb():.2f} GB")
    return 0


def _search(args, data, t: float, ridge):
    """Run the --search on the training set only; print its table; (the winner's compiled kernel, its ridge)."""
    from ..kernel import compile as compile_spec
    from ..search import parse_axes, search
    from ..sklearn import spec_lets

    if not math.isinf(t):
        raise SpecError("--search chooses hyperparameters of kernel ridge regression (t = inf); drop --t")
    if args.search_n_train < 2:
        raise SpecError(f"--search-n-train takes a number >= 2, got {args.search_n_train}")
    fraction = 0.1 if args.validation is None else args.validation
    n = len(data.x_train)
    result = search(args.spec, data.x_train, data.y_train, parse_axes(args.search), lets=overrides(args),
                    kernel=args.kernel, classification=data.is_classification, validation=fraction,
                    n_search=args.search_n_train, ridge=ridge, dtype=args.dtype, seed=args.seed,
                    solver=args.solver, n_final=n, say=_say, batch_size=args.batch_size, memory=args.memory,
                    metric=args.search_metric)
    best = result.best
    print(f"search    {len(result.candidates)} candidates on {result.n_search} of {n} training examples, "
          f"{result.n_held} held out for validation (the test set is not used)")
    for line in result.table().splitlines():
        print(f"          {line}")
    print(f"best      {best.label()}, ridge {best.ridge:.3g}: refit on all {n} training examples")
    text, lets = spec_lets(args.spec, math.prod(data.x_train.shape[1:]), {**overrides(args), **best.lets})
    return compile_spec(text, **dict(lets)), best.ridge


def _peak_gb() -> float:
    """Peak resident memory of this process (getrusage: KiB on Linux, bytes on macOS)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**30 if sys.platform == "darwin" else 2**20)
