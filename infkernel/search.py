"""Hyperparameters of a spec chosen on a validation split of the training set, never the test set (issue 17).

Lee et al. 2018 ("Deep Neural Networks as Gaussian Processes", Sec. 3.1
and Table 1) chose the depth, sigma_w^2, sigma_b^2 and the ridge of their
NNGPs on a validation set drawn from the training data. :func:`search` does
the same for any spec: a grid over values of the spec's `let`s (e.g.
``{"depth": [1, 2, 3], "w_std": [1.2, 1.4]}``), each candidate's kernel
computed on a random subsample of the training set, its ridge chosen on a
held-out `validation` fraction of that subsample
(:func:`infkernel.predict.holdout.holdout_fit`: least held-out mean squared
error), and the candidates ranked by validation error (classification: the
fraction of held-out examples misclassified, ties by mean squared error;
regression: mean squared error). The split is the same for every candidate.
Only training data enter: the function takes no test set, and
``infkernel fit SPEC --search NAME=v1,v2,...`` refits the winner on the whole
training set and evaluates it on the test set once, after the search.
"""
from __future__ import annotations

import itertools
import math
import time
from typing import Callable, NamedTuple, Sequence

import numpy as np

from .errors import SpecError
from .predict import classes_and_targets
from .predict.holdout import holdout_fit
from .predict.solvers import choose_solver
from .predict.precision import refused


class Candidate(NamedTuple):
    """One point of the grid: its lets, the ridge chosen for it, and its validation scores.

    `accuracy` is None for regression; `excluded` counts the candidate ridges
    a float32 kernel's rounding excluded; `seconds` is kernels plus ridge.
    """

    lets: dict
    ridge: float
    mse: float
    accuracy: float | None
    excluded: int
    seconds: float

    def label(self) -> str:
        """NAME=VALUE pairs, as on the command line."""
        return " ".join(f"{k}={v:g}" for k, v in self.lets.items())

    def score(self, metric: str = "accuracy") -> tuple[float, float]:
        """What the search minimizes: (validation error rate, mse) for classes with metric "accuracy", else (mse, mse)."""
        return (1.0 - self.accuracy if self.accuracy is not None and metric == "accuracy" else self.mse, self.mse)


class SearchResult(NamedTuple):
    """All candidates in grid order, the best one, and the sizes used (`n_search` examples, `n_held` held out)."""

    best: Candidate
    candidates: tuple
    n_search: int
    n_held: int

    def table(self) -> str:
        """The candidates as a text table, the winner marked with '*'."""
        names = list(self.best.lets)
        head = [*names, "ridge", "val acc" if self.best.accuracy is not None else "", "val mse", "s"]
        rows = []
        for c in self.candidates:
            acc = f"{c.accuracy:.4f}" if c.accuracy is not None else ""
            rows.append([*(f"{c.lets[k]:g}" for k in names), f"{c.ridge:.3g}", acc, f"{c.mse:.5g}",
                         f"{c.seconds:.1f}", "*" if c is self.best else ""])
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
        fmt = lambda cells: "  ".join(x.rjust(w) for x, w in zip(cells, widths)).rstrip()  # noqa: E731
        return "\n".join([fmt(head), *(fmt(r[:-1]) + (" *" if r[-1] else "") for r in rows)])


def parse_axes(items: Sequence[str]) -> dict[str, tuple[float, ...]]:
    """{"depth": (1, 2, 3), ...} from ["depth=1,2,3", ...] (the --search arguments); SpecError on bad syntax.

    Whole numbers become ints (a depth must be one); a name given twice is an error.
    """
    axes: dict[str, tuple[float, ...]] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        values = []
        for part in text.split(","):
            try:
                value = float(part)
            except ValueError:
                value = math.nan
            values.append(value)
        if not sep or not name.isidentifier() or not values or not all(math.isfinite(v) for v in values):
            raise SpecError(f"--search takes NAME=V1,V2,... (numbers), got {item!r}")
        if name in axes:
            raise SpecError(f"--search names {name!r} twice; give all its values in one --search {name}=V1,V2,...")
        axes[name] = tuple(int(v) if v.is_integer() else v for v in values)
    return axes


def grid(axes: dict[str, Sequence[float]]) -> list[dict]:
    """Every combination of the axes' values, in order (the last axis varies fastest)."""
    if not axes:
        raise SpecError("a search needs at least one axis, e.g. depth=1,2,3")
    names = list(axes)
    return [dict(zip(names, values)) for values in itertools.product(*(axes[k] for k in names))]


def search(spec, x_train, y_train, axes: dict[str, Sequence[float]], *, lets: dict | None = None,
           kernel: str = "nngp", classification: bool | None = None, validation: float = 0.1,
           n_search: int | None = None, ridge="auto", dtype: str = "float64", seed: int = 0,
           solver: str = "auto", n_final: int | None = None, say: Callable[[str], None] | None = None,
           batch_size: int | None = None, memory=None, metric: str = "accuracy") -> SearchResult:
    """The grid candidate of `axes` with the least validation error, and the table of all of them.

    spec: a .ik path or text; x_train (n, ...) inputs, reshaped to the spec's
    input; y_train (n,) class labels or real targets (n,) or (n, k). axes:
    {let name: values}; lets: fixed overrides of other lets (a let both fixed
    and searched is a SpecError). Each candidate's `kernel` ("nngp" or "ntk")
    is computed in `dtype` on a random subsample of `n_search` training
    examples (default: all), and its ridge ("auto": chosen on the held-out
    `validation` fraction of that subsample by
    :func:`~infkernel.predict.holdout.holdout_fit`, solver `solver`; a
    number: that ridge) is judged for float32 rounding as the final fit on
    `n_final` examples (default n) will be. classification: None decides by
    the labels (integers or strings are classes). `say` gets one line per
    candidate (validation accuracy / mse, chosen ridge, seconds). metric:
    "accuracy" ranks classifiers by held-out error rate (ties by mse), "mse"
    by held-out mean squared error (less noisy on a small validation split);
    regression is always ranked by mse.

    Raises SpecError: unknown let names (with a did-you-mean, from the spec
    compiler), bad axes, a fraction outside (0, 1). Never sees a test set.
    """
    from .datasets import reshape_for
    from .kernel import compile as compile_spec
    from .sklearn import spec_lets

    say = say or (lambda _: None)
    fixed = dict(lets or {})
    both = sorted(set(fixed) & set(axes))
    if both:
        raise SpecError(f"{', '.join(both)} both fixed (--set) and searched (--search)")
    if kernel not in ("nngp", "ntk"):
        raise SpecError(f"kernel must be 'nngp' or 'ntk', got {kernel!r}")
    if metric not in ("accuracy", "mse"):
        raise SpecError(f"metric must be 'accuracy' or 'mse', got {metric!r}")
    if not 0 < validation < 1:
        raise SpecError(f"the validation fraction must be between 0 and 1, got {validation!r}")
    points = grid(axes)
    x, y = np.asarray(x_train), np.asarray(y_train)
    n = len(x)
    if len(y) != n:
        raise SpecError(f"x_train has {n} examples but y_train {len(y)}")
    if classification is None:
        classification = y.ndim == 1 and (y.dtype.kind in "iuOSU" or y.dtype == bool)
    size = n if n_search is None else min(int(n_search), n)
    if size < 2:
        raise SpecError(f"the search needs at least 2 training examples, got n_search = {n_search}")
    pick = np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False)) if size < n else np.arange(n)
    x, y = x[pick], y[pick]
    targets = classes_and_targets(y)[1] if classification else y
    n_features = math.prod(x.shape[1:])

    def compiled(point: dict):
        text, overrides = spec_lets(spec, n_features, {**fixed, **point})
        return compile_spec(text, **dict(overrides))

    first = compiled(points[0])  # unknown names fail here, before any kernel is computed
    x = reshape_for(x, tuple(first.graph.input_shape))
    ridges = None if ridge == "auto" else [float(ridge)]
    final_n = n if n_final is None else int(n_final)
    say(f"search: {len(points)} candidates over {', '.join(axes)}; {kernel} kernels ({dtype}) of {size} of {n} "
        f"training examples, {validation:g} of them held out for validation; ridge "
        f"{'chosen per candidate on the held-out part' if ridge == 'auto' else f'{float(ridge):g}'}")
    candidates = []
    for i, point in enumerate(points):
        start = time.perf_counter()
        kfn = first if i == 0 else compiled(point)
        k = getattr(kfn(x, get=kernel, dtype=dtype, batch_size=batch_size, memory=memory, progress=False), kernel)
        fitted = holdout_fit(k, targets, ridges, fraction=validation, seed=seed, solver=solver,
                             n_final=final_n, final=choose_solver(final_n, solver)[0])
        sel, held, pred = fitted.selection, fitted.held, fitted.predictions
        accuracy = float(np.mean(np.argmax(pred, axis=1) == np.argmax(targets[held], axis=1))) \
            if classification else None
        excluded = int(np.sum(refused(fitted.precision, targets)))
        c = Candidate(dict(point), sel.ridge, float(np.min(sel.errors)), accuracy, excluded,
                      time.perf_counter() - start)
        candidates.append(c)
        acc = f"validation accuracy {accuracy:.4f}, " if accuracy is not None else ""
        note = f"; {excluded} ridges excluded by the float32 precision check" if excluded else ""
        say(f"candidate {i + 1}/{len(points)} {c.label()}: {acc}mse {c.mse:.5g}, ridge {c.ridge:.3g} "
            f"({c.seconds:.1f} s){note}")
    best = min(candidates, key=lambda c: c.score(metric))  # the first of equals, in grid order
    return SearchResult(best, tuple(candidates), size, len(fitted.held))
