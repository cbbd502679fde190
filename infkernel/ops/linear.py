"""Dense and convolutional layers.

Rules (Novak et al. 2020, neural-tangents, Sec. 3 and App. C; Arora et al.
2019, Eq. (7)-(8) for the convolutional NTK): with the mean over the window
taken with zero padding counted,

- ntk parameterization:  Sigma' = w^2 mean(Sigma) + b^2,
                         Theta' = Sigma' + w^2 mean(Theta);
- standard parameterization (Sohl-Dickstein et al. 2020, Eq. (5)):
                         Sigma' = w^2 mean(Sigma) + b^2,
                         Theta' = fan_in mean(Sigma) + w^2 mean(Theta) + [b != 0],
  with fan_in the incoming channels times the window size.

`b_std` absent (None) means no bias. `b_std=0` is a bias initialised at zero:
it changes nothing in the ntk parameterization, but under the standard one its
gradient adds 1 to the NTK (as in neural-tangents).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import ClassVar

import jax
import jax.numpy as jnp
from jax import lax

from . import reference
from .base import Cov, Ctx, Op, Shape, check, register, spatial_axes, window_means
from .symbols import sp_float, window_mean_of
from .window import PADDINGS, Windowed  # noqa: F401 (PADDINGS re-exported)


class Affine(Op):
    """A fresh dense-like layer: y = s_w patches(x) @ w + s_b b, with the
    affine kernel update of the module docstring. Subclasses give the window
    (`_window`), the mean over it (`_mean`) and the forward pass; they have the
    fields width, w_std and b_std."""

    fresh = "yes"
    linear = True
    explain_window: ClassVar[str] = "mean"  # name of the window operation in `explain`

    def _window(self, ctx: Ctx) -> tuple[int, ...]:
        return ()

    def _mean(self, a, ctx: Ctx):
        return a

    def fan_in(self, ctx: Ctx) -> int:
        return ctx.in_shape.channels * math.prod(self._window(ctx))

    def check_width(self, parameterization: str) -> None:
        check(self.width is not None or parameterization == "ntk",
              f"{self.name} needs width=N under the standard parameterization")

    def kernel(self, k: Cov, ctx: Ctx) -> Cov:
        w2, b2 = self.w_std ** 2, (self.b_std or 0.0) ** 2
        mean_nngp = self._mean(k.nngp, ctx)
        nngp = w2 * mean_nngp + b2
        ntk = None
        if k.ntk is not None:
            if ctx.parameterization == "ntk":
                ntk = nngp + w2 * self._mean(k.ntk, ctx)
            else:
                bias = 0.0 if self.b_std is None else 1.0
                ntk = self.fan_in(ctx) * mean_nngp + w2 * self._mean(k.ntk, ctx) + bias
        return Cov(nngp, ntk, None, None)

    def explain(self, ctx, ins):
        s, t = (window_mean_of(a, self._window(ctx), self.explain_window) for a in (ins[0].sigma, ins[0].theta))
        w2, b2 = sp_float(self.w_std) ** 2, sp_float(self.b_std or 0) ** 2
        sigma = w2 * s + b2
        if ctx.parameterization == "ntk":
            return sigma, sigma + w2 * t, "affine, ntk parameterization"
        bias = 0 if self.b_std is None else 1
        return sigma, self.fan_in(ctx) * s + w2 * t + bias, "affine, standard parameterization (fan_in = %d)" % self.fan_in(ctx)

    def weight_shape(self, ctx: Ctx) -> tuple[int, ...]:
        return self._window(ctx) + (ctx.in_shape.channels, ctx.out_shape.channels)

    def init(self, key, ctx: Ctx):
        fan_in, out = self.fan_in(ctx), ctx.out_shape.channels
        kw, kb = jax.random.split(key)
        w = jax.random.normal(kw, self.weight_shape(ctx))
        b = jax.random.normal(kb, (out,))
        if ctx.parameterization == "standard":
            w, b = w * (self.w_std / math.sqrt(fan_in)), b * (self.b_std or 0.0)
        return {"w": w} if self.b_std is None else {"w": w, "b": b}

    @staticmethod
    def _bias(params, scale):
        return scale * params["b"] if "b" in params else 0.0

    def scales(self, ctx: Ctx) -> tuple[float, float]:
        """Multipliers of (x @ w, b) in the forward pass."""
        if ctx.parameterization == "standard":
            return 1.0, 1.0
        return self.w_std / math.sqrt(self.fan_in(ctx)), self.b_std or 0.0

    def patches(self, z, ctx: Ctx):
        """(n, positions, window * c_in): the input patch each output position
        reads, got from the op's own apply with identity weights (so padding,
        strides and wrapping are exactly the layer's); the finite NTK's
        structured path uses them (`linear`)."""
        m = math.prod(self._window(ctx)) * ctx.in_shape.channels
        eye = jnp.eye(m, dtype=z.dtype).reshape(self._window(ctx) + (ctx.in_shape.channels, m))
        y = self.apply({"w": eye}, z, replace(ctx, parameterization="standard"))
        return y.reshape(y.shape[0], -1, m)

    # -- tests
    @classmethod
    def draw_applies(cls, gen, s, keep_shape):
        return gen.budget > 0 and super().draw_applies(gen, s, keep_shape)

    @classmethod
    def draw_args(cls, gen, s, keep_shape) -> tuple[list[str], dict]:
        """(argument texts, constructor arguments) besides width, w_std and b_std."""
        return [], {}

    @classmethod
    def draw(cls, gen, s, keep_shape=False, target=None):
        args, kwargs = cls.draw_args(gen, s, keep_shape)
        width, ch = gen.width_arg(target)
        gen.budget -= 1
        spatial = cls(**kwargs).shape((Shape(s.spatial, 1),), "ntk").spatial
        gen.emit(" ".join([cls.name, *args]) + f"{width} w_std={gen.w_std()}{gen.b_std()}")
        return replace(s, spatial=spatial, kind="gauss", fresh=True, channels=ch)


@register
@dataclass(frozen=True)
class Dense(Affine):
    """Fully connected layer on the last (channel) axis, shared over positions."""

    name = "dense"
    positional = {"int": "width"}
    draw_priority = 3
    width: int | None = None
    w_std: float = 1.0
    b_std: float | None = None

    def validate(self):
        check(self.width is None or self.width >= 1, f"dense width must be positive, got {self.width}")

    def shape(self, in_shapes, parameterization):
        self.check_width(parameterization)
        return Shape(in_shapes[0].spatial, self.width)

    def features(self, ins, ctx, fc):
        from ..features import rules  # the math and its sources: infkernel.features.rules
        return rules.dense(self, ins, ctx, fc)

    def apply(self, params, x, ctx):
        sw, sb = self.scales(ctx)
        return sw * (x @ params["w"]) + self._bias(params, sb)

    def patches(self, z, ctx):
        return z.reshape(z.shape[0], -1, ctx.in_shape.channels)

    @classmethod
    def examples(cls):
        def ref(x, params, ntk):
            w, b = reference.weights(params, 1, 1.3 / math.sqrt(x.shape[-1]) if ntk else 1.0, 0.4 if ntk else 1.0)
            return x @ w + b
        return [("dense width=5 w_std=1.3 b_std=0.4", (3,), ref), ("dense width=5 w_std=1.3 b_std=0.4", (4, 3), ref)]


@dataclass(frozen=True)
class WindowedAffine(Windowed, Affine):
    """A fresh layer over windows (conv, conv_transpose, conv_local): the
    window's taps are `_window`, the kernel's window mean `_mean`."""

    window: tuple[int, ...]
    padding: str = "valid"
    stride: tuple[int, ...] | int = 1
    width: int | None = None
    w_std: float = 1.0
    b_std: float | None = None

    def _window(self, ctx):
        return self.window

    def validate(self):
        super().validate()
        check(self.width is None or self.width >= 1, f"{self.name} width must be positive, got {self.width}")

    def shape(self, in_shapes, parameterization):
        spatial = self.out_spatial(in_shapes[0])
        self.check_width(parameterization)
        return Shape(spatial, self.width)

    def _mean(self, a, ctx):
        # One 1-D pass per spatial axis (3 + 3 taps for a 3x3 window, not 9).
        groups = spatial_axes(2, len(self.window), ctx.layout_in)
        return window_means(a, groups, self.window, self.strides(), self.padding)

    @classmethod
    def draw_args(cls, gen, s, keep_shape):
        return cls.draw_window(gen, s, keep_shape)

    @classmethod
    def examples(cls):
        """The layer at node 1 (width=4 w_std=1.3 b_std=0.4) against `reference.NAME`."""
        forward = getattr(reference, cls.name)

        def ref(padding, stride):
            def f(x, params, ntk):
                window = params[1]["w"].shape[-2 - len(stride):-2]
                w, b = reference.weights(params, 1, 1.3 / math.sqrt(x.shape[-1] * math.prod(window)) if ntk else 1.0,
                                         0.4 if ntk else 1.0)
                return forward(x, w, stride, padding) + b
            return f

        return [(f"{cls.name} {win} {pad} stride={st} width=4 w_std=1.3 b_std=0.4", dims, ref(pad, stride))
                for win, pad, st, stride, dims in cls.EXAMPLES if pad in cls.paddings]

    # (window, padding, stride text, strides, input dims) of `examples`
    EXAMPLES = (("3", "valid", "1", (1,), (6, 2)), ("3", "same", "2", (2,), (7, 2)),
                ("2", "circular", "1", (1,), (5, 3)), ("3x2", "same", "2x1", (2, 1), (5, 4, 2)),
                ("2x3", "circular", "2", (2, 2), (4, 5, 3)), ("3x3", "valid", "1", (1, 1), (5, 5, 1)))


@register
@dataclass(frozen=True)
class Conv(WindowedAffine):
    """Convolution over the spatial axes (1-D, 2-D or more), weights independent per tap."""

    name = "conv"
    positional = {"dims": "window", "int": "window", "word": "padding"}
    draw_priority = 2

    def features(self, ins, ctx, fc):
        from ..features import rules  # the math and its sources: infkernel.features.rules
        return rules.conv(self, ins, ctx, fc)

    def apply(self, params, x, ctx):
        sw, sb = self.scales(ctx)
        rank = len(self.window)
        padding = self.padding.upper()
        if self.padding == "circular":
            x = jnp.pad(x, [(0, 0), *self.pads(x.shape[1:-1]), (0, 0)], mode="wrap")
            padding = "VALID"
        spatial = "HWD"[:rank] if rank <= 3 else None
        dn = (f"N{spatial}C", f"{spatial}IO", f"N{spatial}C")
        y = lax.conv_general_dilated(x, params["w"], self.strides(), padding, dimension_numbers=dn)
        return sw * y + self._bias(params, sb)
