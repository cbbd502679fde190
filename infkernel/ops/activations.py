"""Elementwise activations.

Each activation supplies its dual kernel (Cho & Saul 2009; Daniely et al.
2016): for (u, v) ~ N(0, [[v1, c], [c, v2]]),
    k(c, v1, v2)    = E[phi(u) phi(v)],
    kdot(c, v1, v2) = E[phi'(u) phi'(v)],
and the layer maps Sigma' = k(Sigma, var1, var2), Theta' = kdot * Theta
(Jacot et al. 2018, Theorem 1; Arora et al. 2019, Eq. (5)).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import jax
import jax.numpy as jnp
from jax import lax
from jax.scipy.special import erf

from dataclasses import replace

import numpy as np

from . import reference
from .base import Cov, Ctx, Op, check, outer_vars, register


class Activation(Op):
    """An elementwise activation: subclasses give `fn` and `dual`. The dual
    assumes Gaussian pre-activations, so the graph builder requires the input
    to come from a fresh dense or conv layer (or a linear image of one).

    Tests: `draw_text(gen)` writes the op with random arguments (default: its
    name); `example` is (spec line, NumPy function) for the forward-pass test."""

    needs_gaussian_input = True
    reads_variances = True
    per_channel = True
    example: ClassVar[tuple] = ()

    @classmethod
    def draw_applies(cls, gen, s, keep_shape):
        return s.kind == "gauss"

    @classmethod
    def draw_prepare(cls, gen, s):
        return s if s.kind == "gauss" else gen.linear(s)

    @classmethod
    def draw_text(cls, gen) -> str:
        return cls.name

    @classmethod
    def draw(cls, gen, s, keep_shape=False, target=None):
        gen.emit(cls.draw_text(gen))
        return replace(s, kind="other", fresh=False)

    @classmethod
    def examples(cls):
        return [("dense width=5\n" + text, (5, 2), reference.after_dense(fn))
                for text, fn in zip(cls.example[::2], cls.example[1::2])]

    def fn(self, x):
        raise NotImplementedError

    def dual(self, c, v1, v2, need_dot: bool):
        """(k, kdot or None), elementwise with broadcasting."""
        raise NotImplementedError

    note: str = "closed form"

    def dual_expr(self, c, v1, v2):
        """(k, kdot) as sympy expressions, for `infkernel explain`."""
        raise NotImplementedError

    def explain(self, ctx, ins):
        k, kdot = self.dual_expr(ins[0].sigma, ins[0].q1, ins[0].q2)
        return k, kdot * ins[0].theta, self.note

    def kernel(self, k: Cov, ctx: Ctx) -> Cov:
        v1, v2 = outer_vars(k, ctx.in_shape.rank, ctx.layout_in)
        nngp, kdot = self.dual(k.nngp, v1, v2, k.ntk is not None)
        if k.ntk is None:
            return Cov(nngp, None, None, None)
        # One array for both outputs: XLA on CPU then computes them in one loop
        # over the inputs instead of two (1.7x faster on pairs of positions).
        both = lax.optimization_barrier(jnp.stack([nngp, kdot * k.ntk]))
        return Cov(both[0], both[1], None, None)

    def features(self, ins, ctx, fc):
        from ..features import rules  # the math and its sources: infkernel.features.rules
        return rules.activation(self, ins, ctx, fc)

    def apply(self, params, x, ctx):
        return self.fn(x)


def _safe_sqrt(a):
    return jnp.sqrt(jnp.maximum(a, 0))


# arctan(a) = a q(a^2) on [0, 1], |error| <= 1.4e-7 evaluated in float32 (a
# least-squares minimax fit): float32 resolution, and ~15x faster than XLA's
# scalar atan2/acos on CPU, which dominate the ReLU rule otherwise.
_ATAN = (0.9999993295678419, -0.3332984572635347, 0.19946442512828017, -0.13908158029240178,
         0.09641235841891486, -0.05590156206917675, 0.021856708052476248, -0.004053095644515559)


def arctan2(y, x):
    """atan2(y, x) for y >= 0, in [0, pi]: a polynomial in float32, exact
    jnp.arctan2 in float64. atan2(0, x > 0) = 0 exactly in both."""
    if y.dtype != jnp.float32:
        return jnp.arctan2(y, x)
    ax = jnp.abs(x)
    hi, lo = jnp.maximum(ax, y), jnp.minimum(ax, y)
    a = lo / jnp.where(hi > 0, hi, 1)
    z = a * a
    q = _ATAN[-1]
    for coef in _ATAN[-2::-1]:
        q = q * z + coef
    r = a * q
    r = jnp.where(y > ax, math.pi / 2 - r, r)
    return jnp.where(x < 0, math.pi - r, r)


def _angle(c, v1, v2):
    """(d, theta): d = sqrt(v1 v2 - c^2) = sqrt(v1 v2) sin theta, and the angle
    theta = atan2(d, c) = arccos(c / sqrt(v1 v2)), the correlation clipped to
    [-1, 1]. A zero variance gives correlation 0 (theta = pi/2) instead of 0/0.

    v1 v2 - c^2 is computed as (v1 - c) v2 + c (v2 - c): exactly 0 when
    c = v1 = v2 (an example with itself), whether or not the compiler fuses
    multiply-adds, so theta is exactly 0 there; arccos is steepest at 1, where
    one rounding of the correlation would move theta by ~3e-4 in float32."""
    d = _safe_sqrt((v1 - c) * v2 + c * (v2 - c))
    t = jnp.where(v1 * v2 > 0, arctan2(d, c), math.pi / 2)
    return d, t


def abrelu_dual(a: float, b: float, c, v1, v2, need_dot: bool):
    """phi(x) = a x for x < 0, b x for x >= 0, as b relu(x) - a relu(-x):
    k = (a^2 + b^2) J1(theta) - 2ab sqrt(v1 v2)(sin t - t cos t)/(2 pi),
    J1 the arc-cosine kernel of degree 1 (Cho & Saul 2009, Eq. (6));
    kdot = ((a^2 + b^2)(pi - theta) + 2ab theta) / (2 pi).
    With sqrt(v1 v2) sin t = d and sqrt(v1 v2) cos t = c (see `_angle`),
    J1 = (d + (pi - t) c) / (2 pi): no sin, cos or division per entry."""
    d, t = _angle(c, v1, v2)
    k = (a * a + b * b) * (d + (math.pi - t) * c) / (2 * math.pi)
    if a != 0:
        k = k - 2 * a * b * (d - t * c) / (2 * math.pi)
    kdot = None
    if need_dot:
        kdot = ((a * a + b * b) * (math.pi - t) + 2 * a * b * t) / (2 * math.pi)
    return k, kdot


def abrelu_dual_expr(a: float, b: float, c, v1, v2):
    """`abrelu_dual` in sympy."""
    import sympy as sp
    norm = sp.sqrt(v1 * v2)
    t = sp.acos(c / norm)
    a, b = sp.nsimplify(a), sp.nsimplify(b)
    k = (a * a + b * b) * norm * (sp.sin(t) + (sp.pi - t) * sp.cos(t)) / (2 * sp.pi)
    k -= 2 * a * b * norm * (sp.sin(t) - t * sp.cos(t)) / (2 * sp.pi)
    return k, ((a * a + b * b) * (sp.pi - t) + 2 * a * b * t) / (2 * sp.pi)


@register
@dataclass(frozen=True)
class Relu(Activation):
    """max(x, 0); Cho & Saul 2009, arc-cosine kernel of degree 1."""

    name = "relu"
    draw_priority = 0
    example = ("relu", lambda h: np.maximum(h, 0))

    def fn(self, x):
        return jax.nn.relu(x)

    note = "closed form: arc-cosine kernel of degree 1 (Cho & Saul 2009)"

    def dual(self, c, v1, v2, need_dot):
        return abrelu_dual(0.0, 1.0, c, v1, v2, need_dot)

    def dual_expr(self, c, v1, v2):
        return abrelu_dual_expr(0.0, 1.0, c, v1, v2)


@register
@dataclass(frozen=True)
class LeakyRelu(Activation):
    """x for x >= 0, alpha x otherwise (abrelu with a = alpha, b = 1)."""

    name = "leaky_relu"
    positional = {"number": "alpha"}
    example = ("leaky_relu alpha=0.1", lambda h: np.where(h >= 0, h, 0.1 * h))
    alpha: float = 0.01

    @classmethod
    def draw_text(cls, gen):
        return f"leaky_relu alpha={gen.pick([0.2, -0.3, 0.05, 0.5])}"

    def fn(self, x):
        return jnp.where(x >= 0, x, self.alpha * x)

    note = "closed form: arc-cosine kernel of degree 1 (Cho & Saul 2009)"

    def dual(self, c, v1, v2, need_dot):
        return abrelu_dual(self.alpha, 1.0, c, v1, v2, need_dot)

    def dual_expr(self, c, v1, v2):
        return abrelu_dual_expr(self.alpha, 1.0, c, v1, v2)


@register
@dataclass(frozen=True)
class Abrelu(Activation):
    """a x for x < 0, b x for x >= 0 (neural-tangents' ABRelu)."""

    name = "abrelu"
    example = ("abrelu a=-0.3 b=2", lambda h: np.where(h >= 0, 2 * h, -0.3 * h))
    a: float
    b: float

    @classmethod
    def draw_text(cls, gen):
        return "abrelu a=%s b=%s" % gen.pick([(-0.4, 1.2), (0.3, 0.8), (1.1, -0.5), (0.0, 1.0), (-1.0, -0.2)])

    def fn(self, x):
        return jnp.where(x >= 0, self.b * x, self.a * x)

    note = "closed form: arc-cosine kernel of degree 1 (Cho & Saul 2009)"

    def dual(self, c, v1, v2, need_dot):
        return abrelu_dual(self.a, self.b, c, v1, v2, need_dot)

    def dual_expr(self, c, v1, v2):
        return abrelu_dual_expr(self.a, self.b, c, v1, v2)


@register
@dataclass(frozen=True)
class Erf(Activation):
    """The error function; Williams 1997, Eq. (11):
    k = (2/pi) arcsin(2c / sqrt((1 + 2 v1)(1 + 2 v2))),
    kdot = (4/pi) / sqrt((1 + 2 v1)(1 + 2 v2) - 4 c^2)."""

    name = "erf"
    draw_priority = 5

    @staticmethod
    def _np_erf(h):
        from scipy.special import erf as np_erf
        return np_erf(h)

    example = ("erf", lambda h: Erf._np_erf(h))

    def fn(self, x):
        return erf(x)

    note = "closed form (Williams 1997)"

    def dual_expr(self, c, v1, v2):
        import sympy as sp
        prod = (1 + 2 * v1) * (1 + 2 * v2)
        return 2 / sp.pi * sp.asin(2 * c / sp.sqrt(prod)), 4 / sp.pi / sp.sqrt(prod - 4 * c ** 2)

    def dual(self, c, v1, v2, need_dot):
        prod = (1 + 2 * v1) * (1 + 2 * v2)
        k = (2 / math.pi) * jnp.arcsin(jnp.clip(2 * c / jnp.sqrt(prod), -1, 1))
        kdot = (4 / math.pi) / _safe_sqrt(prod - 4 * c * c) if need_dot else None
        return k, kdot


@register
@dataclass(frozen=True)
class Gelu(Activation):
    """x Phi(x), exact (not the tanh approximation); Tsuchida et al. 2020,
    "Avoiding kernel fixed points", Sec. 4, in the form of neural-tangents:
    with P = v1 v2, P1 = (1 + v1)(1 + v2), D^2 = P1 - c^2, A = atan2(c, D):
    k = c/4 + (c^2 + P D^2) / (2 pi P1 D) + c A / (2 pi),
    kdot = 1/4 + A/(2 pi) + c/(2 pi D) (1/D^2 + (1 - P)/P1 + 1)."""

    name = "gelu"
    example = ("gelu", lambda h: h * (1 + Erf._np_erf(h / math.sqrt(2))) / 2)

    def fn(self, x):
        return jax.nn.gelu(x, approximate=False)

    note = "closed form (Tsuchida et al. 2020)"

    def dual_expr(self, c, v1, v2):
        import sympy as sp
        prod, prod1 = v1 * v2, (1 + v1) * (1 + v2)
        d = sp.sqrt(prod1 - c ** 2)
        angle = sp.atan(c / d)
        k = c / 4 + ((c ** 2 + prod * d ** 2) / (prod1 * d) + c * angle) / (2 * sp.pi)
        kdot = sp.Rational(1, 4) + angle / (2 * sp.pi) + c / d / (2 * sp.pi) * (1 / d ** 2 + (1 - prod) / prod1 + 1)
        return k, kdot

    def dual(self, c, v1, v2, need_dot):
        prod, prod1 = v1 * v2, (1 + v1) * (1 + v2)
        d2 = prod1 - c * c
        d = _safe_sqrt(d2)
        angle = jnp.arctan2(c, d)
        k = c / 4 + ((c * c + prod * d2) / (prod1 * d) + c * angle) / (2 * math.pi)
        kdot = None
        if need_dot:
            kdot = 0.25 + angle / (2 * math.pi) + c / d / (2 * math.pi) * (1 / d2 + (1 - prod) / prod1 + 1)
        return k, kdot


@register
@dataclass(frozen=True)
class Sin(Activation):
    """a sin(b x + c). With E[cos(b(u -/+ v))] = exp(-b^2 (v1 + v2 -/+ 2 s) / 2):
    k = a^2/2 (e^{-b^2(v1+v2-2s)/2} - cos(2c) e^{-b^2(v1+v2+2s)/2}),
    kdot = a^2 b^2/2 (e^{-b^2(v1+v2-2s)/2} + cos(2c) e^{-b^2(v1+v2+2s)/2})."""

    name = "sin"
    example = ("sin a=1.5 b=0.7 c=0.2", lambda h: 1.5 * np.sin(0.7 * h + 0.2))
    a: float = 1.0
    b: float = 1.0
    c: float = 0.0

    def fn(self, x):
        return self.a * jnp.sin(self.b * x + self.c)

    @classmethod
    def draw_text(cls, gen):
        return "sin a=%s b=%s c=%s" % gen.pick([(1.2, 0.9, 0.3), (1.0, 1.0, 0.0), (0.7, 1.5, -1.2), (1.5, 0.4, 0.8)])

    note = "closed form (Gaussian characteristic function)"

    def dual_expr(self, s, v1, v2):
        import sympy as sp
        a, b, c = (sp.nsimplify(v) for v in (self.a, self.b, self.c))
        minus = sp.exp(-b ** 2 * (v1 + v2 - 2 * s) / 2)
        plus = sp.cos(2 * c) * sp.exp(-b ** 2 * (v1 + v2 + 2 * s) / 2)
        return a ** 2 / 2 * (minus - plus), a ** 2 * b ** 2 / 2 * (minus + plus)

    def dual(self, s, v1, v2, need_dot):
        b2 = self.b ** 2
        minus = jnp.exp(-b2 * (v1 + v2 - 2 * s) / 2)
        plus = math.cos(2 * self.c) * jnp.exp(-b2 * (v1 + v2 + 2 * s) / 2)
        k = self.a ** 2 / 2 * (minus - plus)
        kdot = self.a ** 2 * b2 / 2 * (minus + plus) if need_dot else None
        return k, kdot


@register
@dataclass(frozen=True)
class Identity(Activation):
    """x: leaves both kernels unchanged."""

    name = "identity"
    fresh = "inherit"
    needs_gaussian_input = False
    reads_variances = False

    @classmethod
    def draw_applies(cls, gen, s, keep_shape):
        return True

    @classmethod
    def draw_prepare(cls, gen, s):
        return s

    @classmethod
    def draw(cls, gen, s, keep_shape=False, target=None):
        gen.emit(cls.name)
        return s

    @classmethod
    def examples(cls):
        return [("identity", (5, 2), lambda x, p, ntk: x)]

    def fn(self, x):
        return x

    note = "identity"

    def features(self, ins, ctx, fc):
        from ..features import rules  # the math and its sources: infkernel.features.rules
        return rules.identity(self, ins, ctx, fc)

    def kernel(self, k, ctx):
        return Cov(k.nngp, k.ntk, None, None)

    def dual_expr(self, c, v1, v2):
        return c, 1

    def dual(self, c, v1, v2, need_dot):
        return c, (jnp.ones_like(c) if need_dot else None)
