"""The one extension point: an op is one registered, final class.

A class carries everything about its op: the DSL keyword (`name`, which is
also the registry key and, without underscores, the lower-cased class name),
its arguments (dataclass fields), its shape rule (`shape`), its finite-width
forward pass (`init`, `apply`), its infinite-width kernel rule (`kernel`),
its printed rule (`explain`), the capabilities the rest of the library asks
about (class attributes, below), and its tests: a hypothesis strategy
(`draw_applies`, `draw_prepare`, `draw`, used by `infkernel.testing.specs`)
and forward-pass references (`examples`, used by tests/test_finite.py).
The parser, the graph builder, the compiler, the finite network, the export
lists and the tests all iterate `REGISTRY`; nothing else names an op.

How to add an op
----------------
1. Write one module in `infkernel/ops/` (every module of the package is
   imported by `infkernel/ops/__init__.py`, so registering is importing).
   Declare a frozen dataclass decorated with `@register`, named after its
   keyword (`conv_local` -> `ConvLocal`); its fields are the spec arguments,
   `positional` maps positional token kinds to fields. Windowed ops
   (window/stride/padding) derive from `infkernel.ops.window.Windowed`, fresh
   dense-like layers (w_std, b_std, width) from `infkernel.ops.linear.Affine`,
   activations from `infkernel.ops.activations.Activation` (then only `fn`,
   `dual` and `dual_expr` are needed), joins of branches (`parallel NAME:`)
   set `arity = -1`, `keyword = False` and implement `kernel_fanin`.
2. Implement `shape`, `kernel` (cite paper and equation in the docstring),
   `explain`, `init`/`apply` (the finite network: Monte Carlo and `compare`
   use it), and `validate` (SpecError with a hint for bad arguments).
3. Declare capabilities instead of editing other modules: `reads_variances`
   (the rule reads var1/var2; the compiler records them), `needs_layout`
   (PAIRS for ops that mix positions), `needs_spatial`, `reduces_rank`,
   `fresh` and `needs_gaussian_input`/`needs_centred_input` (the graph
   builder's exactness rules), `gaussian_output`, `reads_self_pairs` and
   `parameterizations` (see below), `linear` (finite NTK by input patches),
   `acts_on_input` (a linear, parameter-free map alike on every channel:
   right after the input, the compiler applies it to the examples),
   `same_channels` and `max_correlated_inputs` (joins), `golden_name`
   (neural-tangents' layer name in tests/data, if not `name`).
4. Tests: give the class `examples()` (spec lines, input dims, a NumPy
   reference of the forward pass) and the strategy hooks `draw_applies`,
   `draw_prepare`, `draw` (they receive `infkernel.testing`'s generator:
   `gen.emit`, `gen.pick`, `gen.count`, `gen.flag`, `gen.w_std()`, ...).
   The generic tests then cover it: forward pass against NumPy in both
   parameterizations, Monte Carlo agreement of its kernel on drawn specs,
   `explain`, the README op table. Add a test file for what is particular to
   the op (closed forms, refusals, golden values).

Kernel state. For a tile of input pairs (x1[a], x2[b]) a node's kernels are
held in one of two layouts (chosen by the compiler, see `infkernel.compiler`):

- DIAG: covariances of the same spatial position, shape (n1, n2, *S);
- PAIRS: covariances of every pair of positions, shape (n1, n2, *S, *S).

A node without spatial axes has S = () and both layouts coincide. Beside the
cross kernels, `Cov` holds each input's own variance at every position,
`var1` (n1, *S) and `var2` (n2, *S), which activations need. They are
precomputed once per example (Arora et al. 2019, Appendix) and looked up per
tile, so a rule only computes `nngp` and `ntk` from its input `Cov`.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import jax.numpy as jnp
from jax import lax

from ..errors import SpecError

DIAG, PAIRS = "diag", "pairs"


@dataclass(frozen=True)
class Shape:
    """One example's shape: spatial extent and channel count (None: unknown or infinite)."""

    spatial: tuple[int, ...]
    channels: int | None
    # With channels None: how many times the (unset) width the channels are
    # (a flatten multiplies it by the positions); weighs `concat` branches.
    scale: int = 1

    @property
    def rank(self) -> int:
        return len(self.spatial)

    def __str__(self) -> str:
        c = str(self.channels) if self.channels is not None else "inf" if self.scale == 1 else f"{self.scale}*inf"
        return "x".join([*map(str, self.spatial), c])


class Cov(NamedTuple):
    """Kernels of one node on a tile of input pairs (see the module docstring)."""

    nngp: Any
    ntk: Any  # None when only the NNGP is asked for
    var1: Any
    var2: Any


@dataclass(frozen=True)
class Ctx:
    """What a rule may know about its node besides its arguments."""

    in_shapes: tuple[Shape, ...]
    out_shape: Shape
    layout_in: str
    layout_out: str
    parameterization: str  # "ntk" | "standard"

    @property
    def in_shape(self) -> Shape:
        return self.in_shapes[0]


REGISTRY: dict[str, type["Op"]] = {}


def register(cls):
    """Class decorator: add an op to the registry under its DSL keyword."""
    key = cls.name
    if cls.__name__.lower() != key.replace("_", ""):
        raise TypeError(f"op class {cls.__name__} must be named after its keyword {key!r}")
    if key in REGISTRY:
        raise TypeError(f"op {key!r} registered twice")
    REGISTRY[key] = cls
    return cls


class Op:
    """Base of every op. Subclasses are frozen dataclasses whose fields are the
    op's keyword arguments (types from the annotations, defaults from the
    fields); `positional` maps a positional token kind ('dims', 'int', 'word')
    to the field it fills, e.g. `conv 3x3 same`."""

    name: ClassVar[str]
    arity: ClassVar[int] = 1  # number of inputs; -1: any number >= 2
    positional: ClassVar[dict[str, str]] = {}
    keyword: ClassVar[bool] = True  # written as a statement in the language
    # Layout this op needs at its input: None means "the layout of its own output".
    needs_layout: ClassVar[str | None] = None
    # Is the output a fresh zero-mean linear map, independent of everything
    # else ("yes": dense, conv), a linear image of its inputs ("inherit"), or
    # neither ("no")? Sums and layernorm are exact only on fresh inputs.
    fresh: ClassVar[str] = "no"
    needs_centred_input: ClassVar[bool] = False
    needs_gaussian_input: ClassVar[bool] = False
    # -- declared capabilities (asked by the compiler, graph, finite nets, training, tests)
    reads_variances: ClassVar[bool] = False  # the rule reads var1/var2 of its input
    needs_spatial: ClassVar[bool] = False  # the input must have spatial axes
    reduces_rank: ClassVar[bool] = False  # the output has no spatial axes (gap, flatten)
    # y = s_w * patches(x) @ w + s_b * b with w shared by all positions: the
    # finite NTK takes the structured path (`infkernel.finite`), and the op has
    # `width`, `fan_in`, `patches` and `scales`.
    linear: ClassVar[bool] = False
    shared_weights: ClassVar[bool] = True  # with `linear`: one w for all positions (False: conv_local)
    same_channels: ClassVar[bool] = False  # a join whose inputs must have equal channels (sum, prod)
    # Acts on each channel alone, alike for all channels, without parameters
    # (activations, pooling, flatten): it commutes with stacking channels, so the
    # graph builder moves it into the branches of a `parallel concat` before it.
    per_channel: ClassVar[bool] = False
    # Linear, parameter-free and the same map on every channel (pooling,
    # flatten): on the network input, the op's kernel is the input covariance
    # of `apply(None, x)` (K' = A K A^T = cov(A x, A x')), so the compiler
    # applies it to the examples before any covariance is formed.
    acts_on_input: ClassVar[bool] = False
    stacks_channels: ClassVar[bool] = False  # a join that stacks its inputs' channels (concat)
    # A join exact only for independent inputs: how many inputs may fail to
    # end in their own fresh dense/conv layer (None: no condition).
    max_correlated_inputs: ClassVar[int | None] = None
    golden_name: ClassVar[str | None] = None  # neural-tangents' layer-list name, if not `name`
    # The rule reads each example's own covariances at all pairs of positions
    # (n, *S, *S) as var1/var2 (attention's weights); the compiler's self pass records them.
    reads_self_pairs: ClassVar[bool] = False
    parameterizations: ClassVar[tuple[str, ...]] = ("ntk", "standard")  # those the op is defined in
    # Is the output Gaussian at infinite width whenever the input is? False
    # (an instance property may decide) for a Gaussian scale mixture (sqrt-scaled
    # attention at finite heads): the graph builder then admits only ops whose
    # rule is linear in the covariance downstream.
    gaussian_output: ClassVar[bool] = True

    # -- tests: the hypothesis strategy of `infkernel.testing` ------------------
    draw_priority: ClassVar[int] = 100  # lower: drawn (and shrunk towards) first
    drawn: ClassVar[bool] = True  # drawn among random ops (the input is not)
    block: ClassVar[bool] = False  # written as a block (parallel joins)

    @classmethod
    def draw_applies(cls, gen, s, keep_shape: bool) -> bool:
        """May a random spec use this op on state `s` (see `infkernel.testing.State`)?"""
        return (s.rank > 0 or not cls.needs_spatial) and not (keep_shape and cls.reduces_rank)

    @classmethod
    def draw_prepare(cls, gen, s):
        """Emit what must come before the op (a dense layer before an
        activation, ...); return the new state."""
        if cls.needs_spatial and s.rank == 0:
            raise SpecError(f"internal: {cls.name} needs spatial axes")  # callers check draw_applies
        return s

    @classmethod
    def draw(cls, gen, s, keep_shape: bool = False, target=None):
        """Emit the op with random arguments (`gen.emit(text)`); return the new
        state. keep_shape: keep the spatial shape and channels; target: the
        channels a fresh layer must produce."""
        gen.emit(cls.name)
        return s

    @classmethod
    def examples(cls) -> list:
        """[(spec lines after `input DIMS`, input dims, reference(x, params, ntk))]:
        the finite forward pass of each against an independent NumPy reference
        (`infkernel.ops.reference`); `params` are the network's, `ntk` whether
        the ntk parameterization is in use."""
        return []

    def validate(self) -> None:
        """Check argument values; raise SpecError. Called on construction."""

    def __post_init__(self):
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _typed(self.name, f.name, str(f.type), getattr(self, f.name)))
        self.validate()

    # -- shape -----------------------------------------------------------
    def shape(self, in_shapes: tuple[Shape, ...], parameterization: str) -> Shape:
        return in_shapes[0]

    # -- infinite width --------------------------------------------------
    def kernel(self, k: Cov, ctx: Ctx) -> Cov:
        raise NotImplementedError

    def kernel_fanin(self, ks: tuple[Cov, ...], ctx: Ctx) -> Cov:
        """Rule of an op with several inputs (arity != 1)."""
        raise NotImplementedError

    # -- random features (infkernel.features) -----------------------------
    def features(self, ins: tuple, ctx: Ctx, fc):
        """Output features from the input features `ins` (a tuple of
        `infkernel.features.Feats`, one per input), so that their inner
        products approximate this op's kernel rule; `fc` is the
        `infkernel.features.FeatureCtx` (m, draws of random matrices). An op
        without a construction raises a SpecError naming it."""
        covered = ", ".join(k for k, c in REGISTRY.items() if c.features is not Op.features)
        raise SpecError(f"op {self.name!r} has no feature-map construction",
                        hint=f"use ik.compile for its exact kernel; feature maps cover {covered}")

    # -- finite width ----------------------------------------------------
    def init(self, key, ctx: Ctx):
        """Parameters of the finite layer (a pytree; () for none)."""
        return ()

    def apply(self, params, x, ctx: Ctx):
        raise NotImplementedError

    # -- printed recursion (infkernel.explain) ------------------------------
    def explain(self, ctx: Ctx, ins: list) -> tuple:
        """(Sigma', Theta', note): sympy expressions of the inputs' symbols
        `ins` (each a `infkernel.explain.Terms`); Theta' is None when the rule
        has no NTK part of its own. `note` names the path and the source."""
        raise NotImplementedError

    # -- description -----------------------------------------------------
    def args_text(self) -> str:
        parts = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value != f.default:
                parts.append(f"{f.name}={_fmt(value)}")
        return " ".join(parts)

    def __str__(self) -> str:
        return f"{self.name} {self.args_text()}".strip()


def _fmt(value) -> str:
    if isinstance(value, tuple):
        return "x".join(map(str, value))
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _typed(op: str, name: str, kind: str, value):
    """An op argument checked against its declared type (`kind`, the annotation's text), for ops built
    from Python (the parser's values pass unchanged): numpy scalars become Python numbers, an int window
    or input shape the 1-tuple the text's `conv 5` gives, a list a tuple; anything else a SpecError."""
    def fail(what: str):
        raise SpecError(f"{op} {name} must be {what}, got {value!r}")

    def integer(v):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not float(v).is_integer():
            fail("an integer" if kind.startswith("int") else "an integer or a tuple of integers, e.g. (3, 3)")
        return int(v)

    if value is None:  # absent (some ops read None as their default even where the annotation omits it)
        return value
    if kind.startswith("float"):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            fail("a number")
        return value if isinstance(value, (int, float)) else float(value)
    if kind.startswith("int"):
        return integer(value)
    if kind.startswith("tuple[int"):
        if isinstance(value, (tuple, list)):
            return tuple(integer(v) for v in value)
        return integer(value) if "| int" in kind else (integer(value),)
    if kind == "str" and not isinstance(value, str):
        fail("a string")
    return value


def check(condition: bool, message: str, hint: str | None = None) -> None:
    if not condition:
        raise SpecError(message, hint=hint)


# -- shared numerics -------------------------------------------------------

def padding_amounts(length: int, window: int, stride: int, padding: str) -> tuple[int, int, int]:
    """(pad_lo, pad_hi, out_length) of one spatial axis, as lax.conv computes them."""
    if padding == "valid":
        return 0, 0, (length - window) // stride + 1
    out = -(-length // stride)
    total = max((out - 1) * stride + window - length, 0)
    return total // 2, total - total // 2, out


def window_means(a, groups, windows, strides, padding: str):
    """Means over 1-D windows, one per group of axes, padding all groups in one
    copy first.

    A group of one axis is average pooling along it. A group of two axes
    (i, j) is K'[i, j] = mean_t K[s*i + t, s*j + t]: the same tap shifts both
    positions, which is how a convolution with weights independent across taps
    acts on pairs of positions. Zero padding counts in the mean (the
    convention of neural-tangents and of lax.conv with zero padding);
    circular padding wraps.

    The padded copy is kept out of the sums' loops (an optimization barrier):
    fused into them, XLA on CPU tests every read against the pad's bounds,
    which halves the speed of the conv rule on pairs of positions."""
    widths = [(0, 0)] * a.ndim
    outs = []
    for axes, window, stride in zip(groups, windows, strides):
        lo, hi, out = padding_amounts(a.shape[axes[0]], window, stride, padding)
        outs.append(out)
        for ax in axes:
            widths[ax] = (lo, hi)
    if any(w != (0, 0) for w in widths):
        a = jnp.pad(a, widths, mode="wrap" if padding == "circular" else "constant")
        a = lax.optimization_barrier(a)
    for axes, window, stride, out in zip(groups, windows, strides, outs):
        total = 0
        for t in range(window):
            index = [slice(None)] * a.ndim
            for ax in axes:
                index[ax] = slice(t, t + stride * (out - 1) + 1, stride)
            total = total + a[tuple(index)]
        a = total / window
    return a


def linear_map(k: Cov, f) -> Cov:
    """The kernels after a linear map of the features, which acts alike on the
    NNGP and the NTK (pooling, flattening, scaling)."""
    return Cov(f(k.nngp), None if k.ntk is None else f(k.ntk), None, None)


def spatial_axes(ndim_batch: int, rank: int, layout: str) -> list[tuple[int, ...]]:
    """For each spatial axis d, the array axes that carry it: (i_d,) in DIAG,
    (i_d, j_d) in PAIRS, after `ndim_batch` leading batch axes."""
    if layout == PAIRS:
        return [(ndim_batch + d, ndim_batch + rank + d) for d in range(rank)]
    return [(ndim_batch + d,) for d in range(rank)]


def outer_vars(k: Cov, rank: int, layout: str):
    """var1 and var2 reshaped to broadcast against k.nngp."""
    v1, v2 = k.var1, k.var2
    n1, n2 = v1.shape[0], v2.shape[0]
    spatial1, spatial2 = v1.shape[1:], v2.shape[1:]
    if layout == PAIRS:
        return (v1.reshape((n1, 1) + spatial1 + (1,) * rank),
                v2.reshape((1, n2) + (1,) * rank + spatial2))
    return v1.reshape((n1, 1) + spatial1), v2.reshape((1, n2) + spatial2)


def pairs_diagonal(a, rank: int):
    """The same-position entries (n1, n2, *S) of a PAIRS array (n1, n2, *S, *S)."""
    spatial = a.shape[2:2 + rank]
    p = math.prod(spatial)
    flat = a.reshape(a.shape[:2] + (p, p))
    return jnp.diagonal(flat, axis1=2, axis2=3).reshape(a.shape[:2] + spatial)


def to_layout(a, rank: int, have: str, want: str):
    """Convert a kernel array between layouts (only PAIRS -> DIAG is possible)."""
    if have == want or rank == 0:
        return a
    if have == PAIRS and want == DIAG:
        return pairs_diagonal(a, rank)
    raise AssertionError(f"cannot derive {want} covariances from {have}")
