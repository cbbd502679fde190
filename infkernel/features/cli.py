"""`infkernel fit SPEC --data ... --features M`: ridge regression on random features."""
from __future__ import annotations

import math
import sys
import time

import numpy as np

from ..errors import SpecError
from ..predict import classes_and_targets
from . import features
from .regression import feature_regression


def run_features(args, data, graph, t: float, ridge) -> int:
    """After the data and task lines: the features, solve and accuracy (or mse) lines of the exact path."""
    if not math.isinf(t):
        raise SpecError("--features solves ridge regression (t = inf) only", hint="drop --t or set --t inf")
    m = args.features
    budgets = (getattr(args, "budget_seconds", None), getattr(args, "budget_gb", None))
    width = getattr(args, "feature_width", None)
    if width is not None and width < 1:
        raise SpecError(f"--feature-width takes a positive number, got {width}")
    copies = getattr(args, "feature_copies", None) or 1
    if copies < 1:
        raise SpecError(f"--feature-copies takes a positive number, got {copies}")
    if m == "auto":
        from .cost import choose_features
        choice = choose_features(graph, len(data.x_train), len(data.x_test), *budgets, get=args.kernel,
                                 dtype=args.dtype, batch_size=args.batch_size or 256, width=width, copies=copies)
        m = choice.m
        print(f"features  auto: {choice.reason}")
    elif any(b is not None for b in budgets):
        raise SpecError("--budget-seconds and --budget-gb size --features auto", hint="pass --features auto")
    if m < 1:
        raise SpecError(f"--features takes a positive number of features or 'auto', got {m}")
    start = time.perf_counter()
    fmap = features(graph, m, get=args.kernel, seed=args.seed, dtype=args.dtype, width=width, copies=copies)
    classes = data.is_classification
    class_names, targets = classes_and_targets(data.y_train) if classes else (None, data.y_train)
    hidden = ("" if fmap.width == m else f", hidden width {fmap.width}") + (f", {copies} copies" if copies > 1 else "")
    print(f"features  {args.kernel}, m={m} (dim {fmap.dim}){hidden}, {args.dtype}, seed {args.seed}")
    space = "its dual (more features than training examples)" if fmap.dim > len(data.x_train) else "feature space"
    print(f"solve     ridge in {space}, streaming over batches of {args.batch_size or 256}", file=sys.stderr)
    validation = args.validation if getattr(args, "validation", None) is not None else 0.2
    out = feature_regression(fmap, data.x_train, targets, data.x_test, ridge=ridge, validation=validation,
                             seed=args.seed, batch_size=args.batch_size or 256)
    elapsed = time.perf_counter() - start
    chosen = f" (validation split {validation:g})" if ridge == "auto" else ""
    print(f"solve     ridge {out.ridge:.3g}{chosen}, features and solve: {elapsed:.2f} s")
    if classes:
        print(f"accuracy  {float(np.mean(class_names[np.argmax(out.mean, axis=1)] == data.y_test)):.4f}")
    else:
        print(f"mse       {float(np.mean((out.mean - data.y_test) ** 2)):.6g}")
    return 0
