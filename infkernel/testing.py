"""Testing helpers for users of infkernel: random specs and a Monte Carlo check.

    from hypothesis import given
    from infkernel.testing import assert_matches_monte_carlo, spec_and_inputs

    @given(spec_and_inputs(include=("layernorm",)))
    def test_layernorm(case):
        spec, x1, x2 = case
        assert_matches_monte_carlo(spec, x1, x2, width=128)

Strategies (hypothesis)
-----------------------
`specs(...)` draws spec TEXT (so that the parser is exercised too) over every
op of the registry, with random depths, shapes, arguments, blocks (`repeat`,
`residual`, `parallel sum/concat`), `let` arithmetic and both
parameterizations; `spec_and_inputs(...)` draws a spec with matching inputs.
Under the standard parameterization every dense/conv layer names its width
through `let width = N` (`width=width`, `width=2*width`, ...), so that
`assert_matches_monte_carlo` can scale all widths at once.

The specs are those for which the kernel rules are exact infinite-width
limits, so that a finite network must converge to them:

- an activation reads a centred Gaussian process: the output of a dense/conv
  layer, or a linear image of such outputs (pooling, flatten, identity,
  layernorm, sums and concatenations of them); never the raw input or the
  output of another activation;
- in a sum (`residual`, `parallel sum`) at most one branch reaches the sum
  without a dense/conv layer of its own, so the added terms are uncorrelated;
- under the ntk parameterization, the branches of a `parallel concat` have
  equal numbers of channels in the finite network (the rule weighs width-less
  branches equally).

Each op draws itself: its class's `draw_applies`, `draw_prepare` and `draw`
hooks (see `infkernel.ops.base`) receive the generator `Gen` and the current
`State`; its capabilities (`needs_spatial`, `reduces_rank`, `block`,
`draw_priority`) place it. A new op is drawn as soon as it is registered.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import SpecError
from .kernel import KINDS, as_graph, check_get
from .ops import REGISTRY

try:  # hypothesis is a test dependency; the Monte Carlo check works without it
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover
    st = None


# -- the state of a spec being drawn ------------------------------------------------

@dataclass(frozen=True)
class State:
    """What the generator knows about the current node (ops' `draw` hooks
    return an updated copy, `dataclasses.replace(s, ...)`).

    kind: "det" (a deterministic function of the input), "gauss" (a centred
    Gaussian process at infinite width), "other" (anything else);
    fresh: the graph builder's notion (output of dense/conv, or a linear image);
    channels: (a, c) meaning a * width + c channels in the finite network."""

    spatial: tuple[int, ...]
    kind: str
    fresh: bool
    channels: tuple[int, int]

    @property
    def rank(self) -> int:
        return len(self.spatial)


def _channels_text(ch: tuple[int, int]) -> str:
    a, c = ch
    parts = ([] if a == 0 else ["width" if a == 1 else f"{a}*width"]) + ([] if c == 0 else [str(c)])
    return "+".join(parts)


def _pick(draw, values):
    """One of `values`. Hypothesis tries (and shrinks towards) the first one, so
    each list starts with a typical, non-degenerate value: the first example a
    derandomized run draws is then a rich network, not a trivial one."""
    return draw(st.sampled_from(values))


def _count(draw, lo: int, hi: int, first: int) -> int:
    """An integer in [lo, hi], `first` tried first."""
    first = min(max(first, lo), hi)
    return _pick(draw, [first] + [i for i in range(lo, hi + 1) if i != first])


def _ops() -> dict:
    """The drawable ops by name, in the order hypothesis tries them (`draw_priority`, then name)."""
    ops = {name: cls for name, cls in REGISTRY.items() if cls.drawn}
    return dict(sorted(ops.items(), key=lambda item: (item[1].draw_priority, item[0])))


class Gen:
    """Emits spec lines for one drawn spec; ops' `draw` hooks write through it."""

    def __init__(self, draw, parameterization: str, depth_budget: int):
        self.draw = draw
        self.param = parameterization
        self.lines: list[str] = []
        self.indent = 0
        self.budget = depth_budget  # dense/conv layers still allowed
        self.names: dict[str, float] = {}

    # -- output
    def emit(self, text: str) -> None:
        self.lines.append("    " * self.indent + text)

    # -- random values (the first of each list is tried first)
    def pick(self, values):
        return _pick(self.draw, list(values))

    def count(self, lo: int, hi: int, first: int) -> int:
        return _count(self.draw, lo, hi, first)

    def flag(self) -> bool:
        return self.draw(st.booleans())

    # -- argument helpers
    def w_std(self) -> str:
        if self.names and self.flag():
            return self.draw(st.sampled_from(sorted(self.names)))
        return str(self.pick([1.3, 0.9, 1.6, 0.6, 1.1, 2.0]))

    def b_std(self) -> str:
        choice = self.pick(["value", "none", "zero"])
        if choice == "value":
            return f" b_std={self.pick([0.3, 0.1, 0.6, 1.0])}"
        return {"none": "", "zero": " b_std=0"}[choice]

    def width_arg(self, target: tuple[int, int] | None) -> tuple[str, tuple[int, int]]:
        """(text, channels) of a dense/conv width: `target` when given."""
        if self.param == "ntk":
            if target is not None and target[0] == 0:  # a fixed channel count (the input's)
                return f" width={target[1]}", target
            return "", (1, 0) if target is None else target
        ch = target if target is not None else self.pick([(1, 0), (2, 0)])
        return f" width={_channels_text(ch)}", ch

    # -- ops
    def op(self, name: str, s: State, *, keep_shape: bool = False, target=None) -> State:
        """Emit `name` (after whatever it needs first) and return the new state."""
        cls = REGISTRY[name]
        s = cls.draw_prepare(self, s)
        return cls.draw(self, s, keep_shape=keep_shape, target=target)

    def linear(self, s: State, *, keep_shape: bool = False, target=None) -> State:
        name = "conv" if s.rank and not self.flag() else "dense"
        return self.op(name, s, keep_shape=keep_shape, target=target)

    def random_op(self, s: State, keep_shape: bool, allow_blocks: bool, linear: bool = True) -> State:
        names = [n for n, cls in _ops().items() if cls.draw_applies(self, s, keep_shape)
                 and (allow_blocks or not cls.block) and (linear or cls.fresh != "yes")]
        return self.op(self.pick(names), s, keep_shape=keep_shape)

    def chain(self, s: State, length: int, keep_shape: bool, allow_blocks: bool, linear: bool = True) -> State:
        for _ in range(length):
            s = self.random_op(s, keep_shape, allow_blocks, linear)
        return s

    # -- blocks
    def branch_body(self, s: State, own_linear: bool, target, allow_blocks: bool) -> State:
        """A shape-keeping chain; with `own_linear`, it ends in a dense/conv of
        `target` channels (None: any)."""
        start = len(self.lines)
        s = self.chain(s, self.count(0, 2, 0), True, allow_blocks)
        if own_linear:
            s = self.linear(s, keep_shape=True, target=target)
        if len(self.lines) == start:
            self.emit("identity")
        return s

    def parallel(self, kind: str, n: int, body) -> list:
        """`parallel KIND:` with n `branch:` blocks; body(i) writes branch i and returns its state."""
        self.emit(f"parallel {kind}:")
        self.indent += 1
        branches = []
        for i in range(n):
            self.emit("branch:")
            self.indent += 1
            branches.append(body(i))
            self.indent -= 1
        self.indent -= 1
        return branches

    @staticmethod
    def join_kind(states) -> str:
        kinds = {s.kind for s in states}
        return kinds.pop() if len(kinds) == 1 else "other"


# -- strategies ---------------------------------------------------------------------

def _input_dims(draw, rank: int) -> tuple[int, ...]:
    if rank == 0:
        return (_count(draw, 2, 6, 4),)
    if rank == 1:
        return (_count(draw, 3, 6, 5), _count(draw, 1, 3, 2))
    return (_count(draw, 3, 4, 4), _count(draw, 3, 4, 3), _count(draw, 1, 3, 2))


def _spec(draw, parameterization=None, include=(), max_layers: int = 4, max_extra: int = 3) -> str:
    unknown = sorted(set(include) - set(REGISTRY))
    if unknown:
        raise SpecError(f"unknown ops in include: {unknown}")
    param = parameterization or _pick(draw, ["ntk", "standard"])
    include = tuple(name for name in include if param in REGISTRY[name].parameterizations)
    needs_spatial = {name for name, cls in REGISTRY.items() if cls.needs_spatial}
    reduces_rank = [name for name, cls in _ops().items() if cls.reduces_rank]
    needs_rank = any(name in needs_spatial for name in include)
    rank = _count(draw, 1 if needs_rank else 0, 2, 1)
    dims = _input_dims(draw, rank)
    gen = Gen(draw, param, max_layers + 2 * len(include))
    head = [f"input {'x'.join(map(str, dims))}", f"parameterization {param}"]
    if param == "standard":
        head.append(f"let width = {_pick(draw, [32, 16, 64])}")
    if draw(st.booleans()):
        value = draw(st.sampled_from(["sqrt(2)", "1.2", "2 ** 0.5 * 0.9", "(1 + 0.5) / 1.1"]))
        head.append(f"let s = {value}")
        gen.names["s"] = 0.0
    s = State(tuple(dims[:-1]), "det", False, (0, dims[-1]))
    reducing = [name for name in include if name in reduces_rank]
    if len(reducing) > 1:
        raise ValueError(f"include holds {len(reducing)} ops that remove the spatial axes ({', '.join(reducing)}); "
                         "one spec can end in only one of them: draw them in separate specs (see op_groups)")
    # Required ops in random order, those removing the spatial axes last.
    keep = [name for name in include if REGISTRY[name].drawn and name not in reduces_rank]
    required = (list(draw(st.permutations(keep))) if keep else []) + [n for n in reduces_rank if n in include]
    extra = _count(draw, 0, max_extra, 1)
    slots = ["req"] * len(required) + ["any"] * extra
    slots = draw(st.permutations(slots)) if slots else []
    repeated = False
    for slot in slots:
        spatial_left = any(n in needs_spatial for n in required)
        if slot == "req":
            s = gen.op(required.pop(0), s)
        elif not repeated and gen.budget >= 2 and _count(draw, 0, 3, 1) == 0:
            repeated = True
            gen.emit(f"repeat {_count(draw, 2, 3, 2)}:")
            gen.indent += 1
            s = gen.chain(s, 1, True, allow_blocks=False)
            s = gen.linear(s, keep_shape=True, target=s.channels if gen.param == "standard" else None)
            gen.indent -= 1
        else:
            s = gen.random_op(s, keep_shape=spatial_left and s.rank > 0, allow_blocks=True)
    # readout: remove spatial axes, then usually a dense layer
    if s.rank:
        s = gen.op(_pick(draw, reduces_rank), s)
    ending = _pick(draw, ["dense", "activation", "dense", "none", "dense"])
    if ending == "activation":
        s = gen.op(_pick(draw, ["relu", "erf", "gelu"]), s)
    if ending == "dense" or s.channels[0] == 0:  # no finite width to converge in: add one
        gen.budget = max(gen.budget, 1)
        s = gen.op("dense", s)
    return "\n".join(head + gen.lines) + "\n"


def specs(parameterization: str | None = None, include=(), max_layers: int = 4, max_extra: int = 3):
    """Strategy: spec text of a random valid network.

    parameterization: "ntk", "standard", or None for either; include: op
    keywords that must occur (ops needing spatial axes make the input
    spatial); max_layers: about how many dense/conv layers besides those that
    `include` brings; max_extra: random ops besides the included ones."""
    if st is None:  # pragma: no cover
        raise ImportError("infkernel.testing.specs needs hypothesis")
    include = tuple(include)
    return st.composite(lambda draw: _spec(draw, parameterization, include, max_layers, max_extra))()


def inputs(dims: tuple[int, ...], n_min: int = 1, n_max: int = 3):
    """Strategy: a float64 array (n, *dims) of Gaussian inputs, n in [n_min, n_max]."""
    if st is None:  # pragma: no cover
        raise ImportError("infkernel.testing.inputs needs hypothesis")

    @st.composite
    def strategy(draw):
        n = _count(draw, n_min, n_max, n_max)
        seed = draw(st.integers(0, 2**32 - 1))
        scale = _pick(draw, [1.0, 0.5, 2.0])
        return scale * np.random.default_rng(seed).normal(size=(n,) + tuple(dims))

    return strategy()


def spec_and_inputs(parameterization: str | None = None, include=(), max_layers: int = 4, max_extra: int = 3,
                    n1: tuple[int, int] = (1, 3), n2: tuple[int, int] = (0, 2)):
    """Strategy: (spec text, x1, x2) with x2 None when n2 draws 0."""
    from .lang import parse

    @st.composite
    def strategy(draw):
        text = draw(specs(parameterization, include, max_layers, max_extra))
        dims = parse(text).input_shape
        x1 = draw(inputs(dims, *n1))
        k = _count(draw, n2[0], n2[1], n2[1])
        x2 = draw(inputs(dims, k, k)) if k else None
        return text, x1, x2

    return strategy()


# -- the Monte Carlo check ------------------------------------------------------------

@dataclass(frozen=True)
class Comparison:
    """The analytic kernels against Monte Carlo at two widths, for one kind.

    Every array is (n1, n2). `analytic[i]`, `mean[i]`, `sem[i]` at widths[i];
    `excess` = |deviation at the larger width| - tolerance: the check fails
    where it is positive."""

    kind: str
    widths: tuple[int, int]
    analytic: tuple
    mean: tuple
    sem: tuple
    bias: np.ndarray
    tolerance: np.ndarray
    excess: np.ndarray
    z: float = float("nan")  # the Student-t quantile used
    floor: float = 0.0  # the rounding floor used (relative)

    @property
    def ok(self) -> bool:
        return bool(np.all(self.excess <= 0))

    def scaled(self, factor: float) -> "Comparison":
        """The same Monte Carlo data checked against the analytic kernels times `factor`
        (a rule that is `factor - 1` off): what the check would say of a wrong rule."""
        ka, kb = self.analytic
        return self.against((factor * ka, factor * kb))

    def against(self, analytic: tuple) -> "Comparison":
        """The same Monte Carlo data checked against other analytic kernels (one (n1, n2) array per
        width, as `analytic`): what the check says of another rule, e.g. one broken on purpose."""
        return _compare(self.kind, self.widths, tuple(analytic), self.mean, self.sem, self.z, self.floor)

    @property
    def resolution(self) -> float:
        """The smallest relative tolerance over the entries, tolerance / |K| at the larger width: about
        the relative error of a rule (a factor 1 + resolution) that the check would catch."""
        return float(np.min(self.tolerance / np.maximum(np.abs(self.analytic[1]), 1e-300)))

    def detectable(self, tol: float = 1e-4) -> float:
        """The smallest relative error e of a rule that this check flags in both directions: the analytic
        kernels scaled by 1 + e and by 1 - e both fail (by bisection on e; 1.0 if 1 +- 0.999 pass). Unlike
        `resolution`, it counts the Monte Carlo mean's own deviation from the analytic kernel."""
        def caught(e):
            return not self.scaled(1 + e).ok and not self.scaled(1 - e).ok
        lo, hi = 0.0, 0.999
        if not caught(hi):
            return 1.0
        while hi - lo > tol:
            mid = (lo + hi) / 2
            lo, hi = (lo, mid) if caught(mid) else (mid, hi)
        return hi

    def worst(self) -> str:
        i = np.unravel_index(np.argmax(self.excess), self.excess.shape)
        (ka, kb), (ma, mb), (sa, sb) = self.analytic, self.mean, self.sem
        return (f"{self.kind}[{i[0]}, {i[1]}]: analytic {kb[i]:.6g}, Monte Carlo {mb[i]:.6g} +- {sb[i]:.2g} "
                f"at width {self.widths[1]} (analytic {ka[i]:.6g}, Monte Carlo {ma[i]:.6g} +- {sa[i]:.2g} at "
                f"width {self.widths[0]}); |difference| {abs(mb[i] - kb[i]):.3g} > tolerance "
                f"{self.tolerance[i]:.3g} (estimated finite-width bias {self.bias[i]:.3g})")


def compare_monte_carlo(spec, x1, x2=None, *, width: int = 128, width_ratio: int = 4, n_samples: int = 32,
                        seed: int = 0, get=KINDS, alpha: float = 1e-3, dtype: str = "float32",
                        analytic=None, progress: bool | None = False, batch: int = 1,
                        **overrides) -> list[Comparison]:
    """The comparisons behind `assert_matches_monte_carlo`, one per kind.

    analytic: a function (graph, x1, x2, get) -> Kernel to test instead of
    `infkernel.compile(graph)(x1, x2, get=get, dtype="float64")`.
    progress, batch: passed to `monte_carlo` (False: no bar; batch: networks per jitted call)."""
    from scipy import stats

    from .kernel import compile as compile_kernel
    from .lang import parse
    from .montecarlo import monte_carlo

    get = check_get(get)
    if width_ratio < 2 or width // width_ratio < 1:
        raise SpecError(f"need width_ratio >= 2 and width >= width_ratio, got {width}, {width_ratio}")
    widths = (width // width_ratio, width)
    graph = as_graph(spec, **overrides)
    if analytic is None:
        def analytic(g, a, b, kinds):
            return compile_kernel(g)(a, b, get=kinds, dtype="float64")
    results = {}
    kernel = None
    for w in widths:
        g = graph
        if "width" in graph.lets and not isinstance(spec, type(graph)):
            g = parse(spec, **{**overrides, "width": w})
        if kernel is None or g is not graph:  # the same graph has the same kernel at both widths
            kernel = analytic(g, x1, x2, get)
        # The narrow networks are cheap: twice the samples there.
        mc = monte_carlo(g, x1, x2, width=w, n_samples=n_samples * (2 if w < width else 1), seed=seed + w,
                         get=get, dtype=dtype, progress=progress, batch=batch)
        results[w] = (kernel, mc)
    symmetric = x2 is None
    n1 = np.asarray(x1).shape[0]
    n2 = n1 if symmetric else np.asarray(x2).shape[0]
    entries = (n1 * (n1 + 1) // 2 if symmetric else n1 * n2) * len(get)
    dof = n_samples - 1
    z = stats.t.ppf(1 - alpha / (2 * entries), dof) if dof > 0 else np.inf
    floor = 1e3 * np.finfo(np.dtype(dtype)).eps
    out = []
    for kind in get:
        ka, kb = (getattr(results[w][0], kind) for w in widths)
        ma, mb = (getattr(results[w][1].mean, kind) for w in widths)
        sa, sb = (getattr(results[w][1].sem, kind) for w in widths)
        out.append(_compare(kind, widths, (ka, kb), (ma, mb), (sa, sb), z, floor))
    return out


def _compare(kind, widths, analytic, mean, sem, z, floor) -> Comparison:
    """The check of `assert_matches_monte_carlo` for one kind."""
    (ka, kb), (ma, mb), (sa, sb) = analytic, mean, sem
    rho = widths[0] / (widths[1] - widths[0])
    # Deviations relative to each width's kernel scale (it grows with the
    # width for the standard NTK), so that the bias model is c / width.
    scale_a, scale_b = (max(float(np.sqrt(np.mean(k ** 2))), 1e-300) for k in (ka, kb))
    ra, rb = (ma - ka) / scale_a, (mb - kb) / scale_b
    bias = rho * (ra - rb)  # estimate of c / widths[1]
    se = np.sqrt((1 + rho) ** 2 * (sb / scale_b) ** 2 + rho ** 2 * (sa / scale_a) ** 2)
    tolerance = (np.abs(bias) + z * se + floor) * scale_b
    excess = np.abs(mb - kb) - tolerance
    return Comparison(kind, widths, (ka, kb), (ma, mb), (sa, sb), bias * scale_b, tolerance, excess, z, floor)


def assert_matches_monte_carlo(spec, x1, x2=None, *, width: int = 128, width_ratio: int = 4, n_samples: int = 32,
                               seed: int = 0, get=KINDS, alpha: float = 1e-3, dtype: str = "float32",
                               analytic=None, **overrides) -> list[Comparison]:
    """Assert that the analytic kernels of `spec` on (x1, x2) agree with the
    empirical kernels of finite networks, within a tolerance computed from the
    Monte Carlo data; return the comparisons.

    Method. Monte Carlo runs at two widths, w_a = width / width_ratio and
    w_b = width (n_samples networks at w_b, twice as many at the cheaper w_a).
    Each width's mean deviation from its analytic kernel, relative to that
    kernel's scale s (the RMS over entries), is r(w) = (mean - K) / s. For an
    exact rule, the finite-width bias of the mean kernel is O(1/w) (Yaida
    2020; Hanin & Nica 2020; Dyer & Gur-Ari 2020): r(w) = c / w + O(1/w^2)
    plus Monte Carlo noise, so
        b = rho (r(w_a) - r(w_b)),  rho = w_a / (w_b - w_a),
    estimates the bias c / w_b at the larger width, and
    r(w_b) - b = (1 + rho) r(w_b) - rho r(w_a) is the Richardson extrapolation
    of r to infinite width, with standard error
        se = sqrt((1 + rho)^2 sem_b^2 + rho^2 sem_a^2) / s.
    The check passes an entry when
        |mean_b - K_b| <= (|b| + z se + 1000 eps) s,
    with z the Student-t quantile at familywise level `alpha` (Bonferroni over
    the compared entries, n_samples - 1 degrees of freedom) and eps of `dtype`
    (float32 rounding in the finite networks). A failure implies that the
    extrapolated discrepancy exceeds z standard errors AND that the
    discrepancy at w_b exceeds the estimated bias itself: a rule error that
    does not shrink with the width fails for enough samples, a correct rule
    fails with probability below `alpha`. Nothing in the tolerance is a
    hand-picked constant but `alpha`.

    Widths: dense/conv layers without `width=` get the Monte Carlo width; if
    the spec text defines `let width = ...` (as specs drawn by `specs` do
    under the standard parameterization), it is overridden with each width too,
    and the analytic kernel recomputed (the standard NTK depends on widths).
    `analytic` replaces the compiled kernel (see `compare_monte_carlo`)."""
    comparisons = compare_monte_carlo(spec, x1, x2, width=width, width_ratio=width_ratio, n_samples=n_samples,
                                      seed=seed, get=get, alpha=alpha, dtype=dtype, analytic=analytic,
                                      **overrides)
    failed = [c for c in comparisons if not c.ok]
    if failed:
        text = spec if isinstance(spec, str) and "\n" in spec else str(as_graph(spec, **overrides))
        raise AssertionError("analytic kernel and Monte Carlo disagree:\n  "
                             + "\n  ".join(c.worst() for c in failed) + "\nspec:\n" + text)
    return comparisons


def op_groups(n_groups: int) -> list[tuple[str, ...]]:
    """The registered ops (but `input`) in at least `n_groups` groups for random specs, each group
    holding at most one op that removes the spatial axes (a spec ends in one of them)."""
    ops = sorted(set(REGISTRY) - {"input"})
    reducing = [name for name in ops if REGISTRY[name].reduces_rank]
    n = max(n_groups, len(reducing))
    groups: list[list[str]] = [[] for _ in range(n)]
    for i, name in enumerate(reducing):
        groups[i].append(name)
    for i, name in enumerate(name for name in ops if name not in reducing):
        groups[i % n].append(name)
    return [tuple(g) for g in groups]
