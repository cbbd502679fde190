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

Every registered op must have a row in `OP_CASES`; `specs` refuses to run
while one is missing, so a new op without test parameters fails the tests.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from .errors import SpecError
from .kernel import KINDS, as_graph, check_get
from .ops import REGISTRY
from .ops.base import padding_amounts

try:  # hypothesis is a test dependency; the Monte Carlo check works without it
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover
    st = None


# -- the state of a spec being drawn ------------------------------------------------

@dataclass(frozen=True)
class _State:
    """What the generator knows about the current node.

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


class _Gen:
    """Emits spec lines for one drawn spec."""

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

    # -- argument helpers
    def w_std(self) -> str:
        if self.names and self.draw(st.booleans()):
            return self.draw(st.sampled_from(sorted(self.names)))
        return str(_pick(self.draw, [1.3, 0.9, 1.6, 0.6, 1.1, 2.0]))

    def b_std(self) -> str:
        choice = _pick(self.draw, ["value", "none", "zero"])
        if choice == "value":
            return f" b_std={_pick(self.draw, [0.3, 0.1, 0.6, 1.0])}"
        return {"none": "", "zero": " b_std=0"}[choice]

    def width_arg(self, target: tuple[int, int] | None) -> tuple[str, tuple[int, int]]:
        """(text, channels) of a dense/conv width: `target` when given."""
        if self.param == "ntk":
            if target is not None and target[0] == 0:  # a fixed channel count (the input's)
                return f" width={target[1]}", target
            return "", (1, 0) if target is None else target
        ch = target if target is not None else _pick(self.draw, [(1, 0), (2, 0)])
        return f" width={_channels_text(ch)}", ch

    # -- ops
    def op(self, name: str, s: _State, *, keep_shape: bool = False, target=None) -> _State:
        """Emit `name` (after whatever it needs first) and return the new state."""
        case = OP_CASES[name]
        s = case.prepare(self, s)
        return case.emit(self, s, keep_shape=keep_shape, target=target)

    def linear(self, s: _State, *, keep_shape: bool = False, target=None) -> _State:
        name = "conv" if s.rank and not self.draw(st.booleans()) else "dense"
        return self.op(name, s, keep_shape=keep_shape, target=target)

    def random_op(self, s: _State, keep_shape: bool, allow_blocks: bool, linear: bool = True) -> _State:
        names = [n for n, c in OP_CASES.items() if c.random and c.applies(self, s, keep_shape)]
        if not allow_blocks:
            names = [n for n in names if not OP_CASES[n].block]
        if not linear:  # keep the channels too (`applies` holds, so no op brings a dense/conv first)
            names = [n for n in names if n not in ("dense", "conv")]
        names.sort(key=lambda n: (PREFERRED.index(n) if n in PREFERRED else len(PREFERRED), n))
        return self.op(_pick(self.draw, names), s, keep_shape=keep_shape)

    def chain(self, s: _State, length: int, keep_shape: bool, allow_blocks: bool, linear: bool = True) -> _State:
        for _ in range(length):
            s = self.random_op(s, keep_shape, allow_blocks, linear)
        return s

    # -- blocks
    def branch_body(self, s: _State, own_linear: bool, target, allow_blocks: bool) -> _State:
        """A shape-keeping chain; with `own_linear`, it ends in a dense/conv of
        `target` channels (None: any)."""
        start = len(self.lines)
        s = self.chain(s, _count(self.draw, 0, 2, 0), True, allow_blocks)
        if own_linear:
            s = self.linear(s, keep_shape=True, target=target)
        if len(self.lines) == start:
            self.emit("identity")
        return s


@dataclass(frozen=True)
class OpCase:
    """Test parameters of one op: when it applies, what it needs before it,
    and how to write it with random arguments.

    applies(gen, state, keep_shape) -> bool: can it be drawn here at random;
    prepare(gen, state) -> state: emit what must come first (e.g. a dense
    layer before an activation); emit(gen, state, keep_shape=, target=) ->
    state: write the op itself."""

    applies: object
    prepare: object
    emit: object
    random: bool = True  # drawn among random ops (input is not)
    block: bool = False  # written as a block (sum, concat)


# Formulas for `act`: closed-form duals and Gauss-Hermite ones.
ACT_FORMULAS = ("tanh(x)", "x*erf(x)", "x**2 - 1", "max(x, 0.3*x)", "exp(-x**2/2)", "cos(x) + x/2")

# -- rows of OP_CASES ---------------------------------------------------------------

def _always(gen, s, keep_shape):
    return True


def _spatial(gen, s, keep_shape):
    return s.rank > 0


def _nothing(gen, s):
    return s


def _need_spatial(gen, s):
    if s.rank == 0:
        raise SpecError("internal: op needs spatial axes")  # callers check `applies`
    return s


def _need_gauss(gen, s):
    return s if s.kind == "gauss" else gen.linear(s)


def _need_fresh(gen, s):
    return s if s.fresh and s.kind == "gauss" else gen.linear(s)


def _emit_dense(gen, s, keep_shape=False, target=None):
    width, ch = gen.width_arg(target)
    gen.budget -= 1
    gen.emit(f"dense{width} w_std={gen.w_std()}{gen.b_std()}")
    return _State(s.spatial, "gauss", True, ch)


def _emit_conv(gen, s, keep_shape=False, target=None):
    draw = gen.draw
    window = tuple(_count(draw, 1, min(3, n), 3) for n in s.spatial)
    padding = _pick(draw, ["same", "circular"] if keep_shape else ["same", "valid", "circular"])
    stride = (1,) * s.rank
    if not keep_shape and draw(st.booleans()):
        stride = tuple(_count(draw, 1, 2, 2) for _ in s.spatial)
    out = tuple(padding_amounts(n, k, st_, padding)[2] for n, k, st_ in zip(s.spatial, window, stride))
    width, ch = gen.width_arg(target)
    gen.budget -= 1
    args = ["x".join(map(str, window)) if s.rank > 1 else str(window[0])]
    if padding != "valid" or draw(st.booleans()):
        args.append(padding)
    if stride != (1,) * s.rank:
        args.append("stride=" + ("x".join(map(str, stride)) if s.rank > 1 and len(set(stride)) > 1 else str(stride[0])))
    gen.emit(f"conv {' '.join(args)}{width} w_std={gen.w_std()}{gen.b_std()}")
    return _State(out, "gauss", True, ch)


def _activation(text):
    def emit(gen, s, keep_shape=False, target=None):
        gen.emit(text(gen))
        return replace(s, kind="other", fresh=False)
    return OpCase(applies=lambda gen, s, keep_shape: s.kind == "gauss", prepare=_need_gauss, emit=emit)


def _emit_identity(gen, s, keep_shape=False, target=None):
    gen.emit("identity")
    return s


def _emit_layernorm(gen, s, keep_shape=False, target=None):
    gen.emit("layernorm")
    return replace(s, fresh=False)


def _emit_avgpool(gen, s, keep_shape=False, target=None):
    draw = gen.draw
    window = tuple(_count(draw, 1, min(3, n), 2) for n in s.spatial)
    if keep_shape:
        padding, stride = "same", (1,) * s.rank
    else:
        padding = _pick(draw, ["same", "valid"])
        stride = None if draw(st.booleans()) else tuple(_count(draw, 1, 2, 1) for _ in s.spatial)
    eff = window if stride is None else stride
    out = tuple(padding_amounts(n, k, st_, padding)[2] for n, k, st_ in zip(s.spatial, window, eff))
    args = ["x".join(map(str, window)) if s.rank > 1 else str(window[0])]
    if padding != "valid" or draw(st.booleans()):
        args.append(padding)
    if stride is not None:
        args.append("stride=" + ("x".join(map(str, stride)) if s.rank > 1 else str(stride[0])))
    gen.emit(f"avgpool {' '.join(args)}")
    return replace(s, spatial=out)


def _emit_gap(gen, s, keep_shape=False, target=None):
    gen.emit("gap")
    return replace(s, spatial=())


def _emit_flatten(gen, s, keep_shape=False, target=None):
    gen.emit("flatten")
    p = math.prod(s.spatial)
    return replace(s, spatial=(), channels=(s.channels[0] * p, s.channels[1] * p))


def _join_kind(states) -> str:
    kinds = {s.kind for s in states}
    return kinds.pop() if len(kinds) == 1 else "other"


def _parallel(gen, kind: str, n: int, body) -> list:
    """`parallel KIND:` with n `branch:` blocks; body(i) writes branch i and returns its state."""
    gen.emit(f"parallel {kind}:")
    gen.indent += 1
    branches = []
    for i in range(n):
        gen.emit("branch:")
        gen.indent += 1
        branches.append(body(i))
        gen.indent -= 1
    gen.indent -= 1
    return branches


def _emit_sum(gen, s, keep_shape=False, target=None):
    """A residual block or a parallel sum; at most one branch without a dense/conv of its own."""
    draw = gen.draw
    if draw(st.booleans()):
        gen.emit("residual:")
        gen.indent += 1
        out = gen.branch_body(s, True, s.channels, allow_blocks=False)
        gen.indent -= 1
        branches = [s, out]
    else:
        n = _count(draw, 2, 3, 2)
        passthrough = _count(draw, -1, n - 1, 0)  # -1: every branch has its own layer
        target_ch = s.channels if passthrough >= 0 else (None if gen.param == "ntk" else s.channels)

        def body(i):
            if i != passthrough:
                return gen.branch_body(s, True, target_ch, allow_blocks=False)
            start = len(gen.lines)
            b = gen.chain(s, _count(draw, 0, 1, 1), True, allow_blocks=False, linear=False)
            if len(gen.lines) == start:
                gen.emit("identity")
            return b

        branches = _parallel(gen, "sum", n, body)
    chans = [b.channels for b in branches if b.channels != (1, 0) or gen.param != "ntk"]
    channels = chans[0] if chans else (1, 0)
    return _State(s.spatial, _join_kind(branches), all(b.fresh for b in branches), channels)


def _emit_concat(gen, s, keep_shape=False, target=None):
    draw = gen.draw
    n = _count(draw, 2, 3, 2)
    # Width-less branches are weighed equally by the rule: under ntk, every
    # branch must then have the same finite channel count.
    all_linear = gen.param == "ntk" and s.channels != (1, 0)
    branches = _parallel(gen, "concat", n,
                         lambda i: gen.branch_body(s, all_linear or draw(st.booleans()), None, allow_blocks=False))
    channels = (sum(b.channels[0] for b in branches), sum(b.channels[1] for b in branches))
    return _State(s.spatial, _join_kind(branches), all(b.fresh for b in branches), channels)


def _no_emit(gen, s, keep_shape=False, target=None):  # the input statement is written by `specs`
    return s


def _fanin_applies(gen, s, keep_shape):
    return gen.budget >= 2


OP_CASES: dict[str, OpCase] = {
    "input": OpCase(applies=_always, prepare=_nothing, emit=_no_emit, random=False),
    "dense": OpCase(applies=lambda gen, s, keep_shape: gen.budget > 0, prepare=_nothing, emit=_emit_dense),
    "conv": OpCase(applies=lambda gen, s, keep_shape: s.rank > 0 and gen.budget > 0, prepare=_need_spatial,
                   emit=_emit_conv),
    "relu": _activation(lambda gen: "relu"),
    "erf": _activation(lambda gen: "erf"),
    "gelu": _activation(lambda gen: "gelu"),
    "leaky_relu": _activation(lambda gen: f"leaky_relu alpha={_pick(gen.draw, [0.2, -0.3, 0.05, 0.5])}"),
    "abrelu": _activation(lambda gen: "abrelu a=%s b=%s" % _pick(gen.draw, [(-0.4, 1.2), (0.3, 0.8), (1.1, -0.5),
                                                                              (0.0, 1.0), (-1.0, -0.2)])),
    "sin": _activation(lambda gen: "sin a=%s b=%s c=%s" % _pick(gen.draw, [(1.2, 0.9, 0.3), (1.0, 1.0, 0.0),
                                                                            (0.7, 1.5, -1.2), (1.5, 0.4, 0.8)])),
    "act": _activation(lambda gen: 'act "%s"' % gen.draw(st.sampled_from(ACT_FORMULAS))),
    "identity": OpCase(applies=_always, prepare=_nothing, emit=_emit_identity),
    "layernorm": OpCase(applies=lambda gen, s, keep_shape: s.fresh and s.kind == "gauss", prepare=_need_fresh,
                        emit=_emit_layernorm),
    "avgpool": OpCase(applies=_spatial, prepare=_need_spatial, emit=_emit_avgpool),
    "gap": OpCase(applies=lambda gen, s, keep_shape: s.rank > 0 and not keep_shape, prepare=_need_spatial,
                  emit=_emit_gap),
    "flatten": OpCase(applies=lambda gen, s, keep_shape: not keep_shape or s.rank == 0, prepare=_nothing,
                      emit=_emit_flatten),
    "sum": OpCase(applies=_fanin_applies, prepare=_nothing, emit=_emit_sum, block=True),
    "concat": OpCase(applies=_fanin_applies, prepare=_nothing, emit=_emit_concat, block=True),
}

# Random ops tried first (hypothesis shrinks towards them), then the rest by name.
PREFERRED = ("relu", "sum", "conv", "dense", "concat", "erf", "avgpool")
NEEDS_SPATIAL = frozenset({"conv", "avgpool", "gap"})


def _check_table() -> None:
    missing = sorted(set(REGISTRY) - set(OP_CASES))
    if missing:
        raise AssertionError(f"ops without test parameters in infkernel.testing.OP_CASES: {', '.join(missing)}")


# -- strategies ---------------------------------------------------------------------

def _input_dims(draw, rank: int) -> tuple[int, ...]:
    if rank == 0:
        return (_count(draw, 2, 6, 4),)
    if rank == 1:
        return (_count(draw, 3, 6, 5), _count(draw, 1, 3, 2))
    return (_count(draw, 3, 4, 4), _count(draw, 3, 4, 3), _count(draw, 1, 3, 2))


REDUCES_RANK = ("gap", "flatten")


def _spec(draw, parameterization=None, include=(), max_layers: int = 4, max_extra: int = 3) -> str:
    _check_table()
    unknown = sorted(set(include) - set(OP_CASES))
    if unknown:
        raise SpecError(f"unknown ops in include: {unknown}")
    param = parameterization or _pick(draw, ["ntk", "standard"])
    needs_rank = any(name in NEEDS_SPATIAL for name in include)
    rank = _count(draw, 1 if needs_rank else 0, 2, 1)
    dims = _input_dims(draw, rank)
    gen = _Gen(draw, param, max_layers + 2 * len(include))
    head = [f"input {'x'.join(map(str, dims))}", f"parameterization {param}"]
    if param == "standard":
        head.append(f"let width = {_pick(draw, [32, 16, 64])}")
    if draw(st.booleans()):
        value = draw(st.sampled_from(["sqrt(2)", "1.2", "2 ** 0.5 * 0.9", "(1 + 0.5) / 1.1"]))
        head.append(f"let s = {value}")
        gen.names["s"] = 0.0
    s = _State(tuple(dims[:-1]), "det", False, (0, dims[-1]))
    # Required ops in random order, those removing the spatial axes last.
    keep = [name for name in include if name != "input" and name not in REDUCES_RANK]
    required = (list(draw(st.permutations(keep))) if keep else []) + [n for n in REDUCES_RANK if n in include]
    extra = _count(draw, 0, max_extra, 1)
    slots = ["req"] * len(required) + ["any"] * extra
    slots = draw(st.permutations(slots)) if slots else []
    repeated = False
    for slot in slots:
        spatial_left = any(n in NEEDS_SPATIAL for n in required)
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
        s = gen.op(_pick(draw, REDUCES_RANK), s)
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

    @property
    def ok(self) -> bool:
        return bool(np.all(self.excess <= 0))

    def worst(self) -> str:
        i = np.unravel_index(np.argmax(self.excess), self.excess.shape)
        (ka, kb), (ma, mb), (sa, sb) = self.analytic, self.mean, self.sem
        return (f"{self.kind}[{i[0]}, {i[1]}]: analytic {kb[i]:.6g}, Monte Carlo {mb[i]:.6g} +- {sb[i]:.2g} "
                f"at width {self.widths[1]} (analytic {ka[i]:.6g}, Monte Carlo {ma[i]:.6g} +- {sa[i]:.2g} at "
                f"width {self.widths[0]}); |difference| {abs(mb[i] - kb[i]):.3g} > tolerance "
                f"{self.tolerance[i]:.3g} (estimated finite-width bias {self.bias[i]:.3g})")


def compare_monte_carlo(spec, x1, x2=None, *, width: int = 128, width_ratio: int = 4, n_samples: int = 32,
                        seed: int = 0, get=KINDS, alpha: float = 1e-3, dtype: str = "float32",
                        analytic=None, **overrides) -> list[Comparison]:
    """The comparisons behind `assert_matches_monte_carlo`, one per kind.

    analytic: a function (graph, x1, x2, get) -> Kernel to test instead of
    `infkernel.compile(graph)(x1, x2, get=get, dtype="float64")`."""
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
                         get=get, dtype=dtype)
        results[w] = (kernel, mc)
    symmetric = x2 is None
    n1 = np.asarray(x1).shape[0]
    n2 = n1 if symmetric else np.asarray(x2).shape[0]
    entries = (n1 * (n1 + 1) // 2 if symmetric else n1 * n2) * len(get)
    dof = n_samples - 1
    z = stats.t.ppf(1 - alpha / (2 * entries), dof) if dof > 0 else np.inf
    floor = 1e3 * np.finfo(np.dtype(dtype)).eps
    rho = widths[0] / (widths[1] - widths[0])
    out = []
    for kind in get:
        ka, kb = (getattr(results[w][0], kind) for w in widths)
        ma, mb = (getattr(results[w][1].mean, kind) for w in widths)
        sa, sb = (getattr(results[w][1].sem, kind) for w in widths)
        # Deviations relative to each width's kernel scale (it grows with the
        # width for the standard NTK), so that the bias model is c / width.
        scale_a, scale_b = (max(float(np.sqrt(np.mean(k ** 2))), 1e-300) for k in (ka, kb))
        ra, rb = (ma - ka) / scale_a, (mb - kb) / scale_b
        bias = rho * (ra - rb)  # estimate of c / widths[1]
        se = np.sqrt((1 + rho) ** 2 * (sb / scale_b) ** 2 + rho ** 2 * (sa / scale_a) ** 2)
        tolerance = (np.abs(bias) + z * se + floor) * scale_b
        excess = np.abs(mb - kb) - tolerance
        out.append(Comparison(kind, widths, (ka, kb), (ma, mb), (sa, sb), bias * scale_b, tolerance, excess))
    return out


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
