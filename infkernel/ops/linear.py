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
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from jax import lax

from .base import Cov, Ctx, Op, Shape, check, padding_amounts, register, spatial_axes, window_means

PADDINGS = ("valid", "same", "circular")


class _Linear(Op):
    """Shared parts of dense and conv: the affine kernel update and the finite init."""

    fresh = "yes"

    def _window(self, ctx: Ctx) -> tuple[int, ...]:
        return ()

    def _mean(self, a, ctx: Ctx):
        return a

    def fan_in(self, ctx: Ctx) -> int:
        return ctx.in_shape.channels * math.prod(self._window(ctx))

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
        from ..explain import sp_float, window_mean_of
        s, t = (window_mean_of(a, self._window(ctx)) for a in (ins[0].sigma, ins[0].theta))
        w2, b2 = sp_float(self.w_std) ** 2, sp_float(self.b_std or 0) ** 2
        sigma = w2 * s + b2
        if ctx.parameterization == "ntk":
            return sigma, sigma + w2 * t, "affine, ntk parameterization"
        bias = 0 if self.b_std is None else 1
        return sigma, self.fan_in(ctx) * s + w2 * t + bias, "affine, standard parameterization (fan_in = %d)" % self.fan_in(ctx)

    def init(self, key, ctx: Ctx):
        fan_in, out = self.fan_in(ctx), ctx.out_shape.channels
        kw, kb = jax.random.split(key)
        shape = self._window(ctx) + (ctx.in_shape.channels, out)
        w = jax.random.normal(kw, shape)
        b = jax.random.normal(kb, (out,))
        if ctx.parameterization == "standard":
            w, b = w * (self.w_std / math.sqrt(fan_in)), b * (self.b_std or 0.0)
        return {"w": w} if self.b_std is None else {"w": w, "b": b}

    @staticmethod
    def _bias(params, scale):
        return scale * params["b"] if "b" in params else 0.0

    def _scales(self, ctx: Ctx) -> tuple[float, float]:
        """Multipliers of (x @ w, b) in the forward pass."""
        if ctx.parameterization == "standard":
            return 1.0, 1.0
        return self.w_std / math.sqrt(self.fan_in(ctx)), self.b_std or 0.0


@register
@dataclass(frozen=True)
class Dense(_Linear):
    """Fully connected layer on the last (channel) axis, shared over positions."""

    name = "dense"
    positional = {"int": "width"}
    width: int | None = None
    w_std: float = 1.0
    b_std: float | None = None

    def validate(self):
        check(self.width is None or self.width >= 1, f"dense width must be positive, got {self.width}")

    def shape(self, in_shapes, parameterization):
        check(self.width is not None or parameterization == "ntk",
              "dense needs width=N under the standard parameterization")
        return Shape(in_shapes[0].spatial, self.width)

    def apply(self, params, x, ctx):
        sw, sb = self._scales(ctx)
        return sw * (x @ params["w"]) + self._bias(params, sb)


@register
@dataclass(frozen=True)
class Conv(_Linear):
    """Convolution over the spatial axes (1-D, 2-D or more), weights independent per tap."""

    name = "conv"
    positional = {"dims": "window", "int": "window", "word": "padding"}
    window: tuple[int, ...]
    padding: str = "valid"
    stride: tuple[int, ...] | int = 1
    width: int | None = None
    w_std: float = 1.0
    b_std: float | None = None

    def validate(self):
        check(len(self.window) >= 1 and min(self.window) >= 1, f"conv window must be positive, got {self.window}")
        check(self.padding in PADDINGS, f"unknown padding {self.padding!r}", f"expected one of {', '.join(PADDINGS)}")
        strides = self.stride if isinstance(self.stride, tuple) else (self.stride,)
        check(min(strides) >= 1, f"stride must be positive, got {self.stride}")
        check(isinstance(self.stride, int) or len(self.stride) == len(self.window),
              f"stride {self.stride} and window {self.window} have different ranks")
        check(self.width is None or self.width >= 1, f"conv width must be positive, got {self.width}")

    def strides(self) -> tuple[int, ...]:
        return self.stride if isinstance(self.stride, tuple) else (self.stride,) * len(self.window)

    def _window(self, ctx):
        return self.window

    def shape(self, in_shapes, parameterization):
        s = in_shapes[0]
        check(s.rank > 0, f"conv needs an input with spatial axes, got a vector of {s.channels}",
              "flatten/gap come after convolutions, not before")
        check(s.rank == len(self.window),
              f"a {len(self.window)}-D conv window {self.window} on a {s.rank}-D input {s}")
        check(self.width is not None or parameterization == "ntk",
              "conv needs width=N under the standard parameterization")
        out = []
        for length, k, st in zip(s.spatial, self.window, self.strides()):
            _, _, n = padding_amounts(length, k, st, self.padding)
            check(n >= 1, f"conv window {self.window} is larger than its input {s} with {self.padding} padding")
            out.append(n)
        return Shape(tuple(out), self.width)

    def _mean(self, a, ctx):
        # One 1-D pass per spatial axis (3 + 3 taps for a 3x3 window, not 9).
        groups = spatial_axes(2, len(self.window), ctx.layout_in)
        return window_means(a, groups, self.window, self.strides(), self.padding)

    def apply(self, params, x, ctx):
        sw, sb = self._scales(ctx)
        rank = len(self.window)
        padding = self.padding.upper()
        if self.padding == "circular":
            pads = [padding_amounts(n, k, s, "same")[:2]
                    for n, k, s in zip(x.shape[1:-1], self.window, self.strides())]
            x = jnp.pad(x, [(0, 0), *pads, (0, 0)], mode="wrap")
            padding = "VALID"
        spatial = "HWD"[:rank] if rank <= 3 else None
        dn = (f"N{spatial}C", f"{spatial}IO", f"N{spatial}C")
        y = lax.conv_general_dilated(x, params["w"], self.strides(), padding, dimension_numbers=dn)
        return sw * y + self._bias(params, sb)
