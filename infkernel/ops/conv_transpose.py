"""Transposed convolution (`conv_transpose`), as lax.conv_transpose computes it.

Finite layer: the input is dilated by the stride (s - 1 zeros between
positions), padded by (a, b) per axis (lax's `_conv_transpose_padding`: for
same, a + b = k + s - 2 and the output has s n positions; for valid,
a + b = k + s - 2 + max(k - s, 0) and the output has s (n - 1) + max(k, s)),
and convolved with stride 1: y[p] = sum_t D[p + t] @ W[t], scaled like conv
(w_std / sqrt(c_in k) under the ntk parameterization).

Kernel rule (neural-tangents' `ConvTranspose`, Novak et al. 2020, App. C;
the conv rule of Arora et al. 2019, Eq. (7), applied to the dilated, padded
input): with D the dilated and padded covariance,
    Sigma'[p, p'] = w^2 / k sum_t D[p + t, p' + t] + b^2,
    Theta'[p, p'] = Sigma'[p, p'] + w^2 / k sum_t Theta_D[p + t, p' + t],
the same tap t on both sides (independent weights per tap), and the
standard parameterization's update as for conv. Unlike conv, the number of
taps that reach a position varies with it (zeros of the dilation count in
the 1/k), so the output variance is not uniform even without padding.
Circular padding is not supported (a SpecError).
"""
from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
from jax import lax

from .base import check, register, spatial_axes, window_means
from .linear import WindowedAffine


def transpose_pads(k: int, s: int, padding: str) -> tuple[int, int]:
    """(a, b): padding of the dilated input of one axis (lax.conv_transpose)."""
    if padding == "same":
        total = k + s - 2
        a = k - 1 if s > k - 1 else -(-total // 2)
    else:
        total = k + s - 2 + max(k - s, 0)
        a = k - 1
    return a, total - a


def dilate_pad(a, axes_groups, strides, pads):
    """Insert s - 1 zeros between entries along every axis of each group and
    pad each by its (lo, hi) (lo or hi may be negative: a crop)."""
    for axes, s, (lo, hi) in zip(axes_groups, strides, pads):
        config = [(0, 0, 0)] * a.ndim
        for ax in axes:
            config[ax] = (lo, hi, s - 1)
        a = lax.pad(a, jnp.zeros((), a.dtype), config)
    return a


@register
@dataclass(frozen=True)
class ConvTranspose(WindowedAffine):
    """Transposed convolution over the spatial axes (1-D, 2-D or more)."""

    name = "conv_transpose"
    positional = {"dims": "window", "int": "window", "word": "padding"}
    paddings = ("valid", "same")
    explain_window = "transposed_mean"

    def _pads(self):
        return [transpose_pads(k, s, self.padding) for k, s in zip(self.window, self.strides())]

    def out_spatial(self, s):
        check(s.rank > 0, f"{self.name} needs an input with spatial axes, got a vector of {s.channels}")
        check(s.rank == len(self.window),
              f"a {len(self.window)}-D {self.name} window {self.window} on a {s.rank}-D input {s}")
        return tuple(st * (n - 1) + 1 + a + b - k + 1
                     for n, k, st, (a, b) in zip(s.spatial, self.window, self.strides(), self._pads()))

    def features(self, ins, ctx, fc):
        from ..features import windowed  # the math and its sources: infkernel.features.windowed
        return windowed.conv_transpose(self, ins, ctx, fc)

    def _mean(self, a, ctx):
        groups = spatial_axes(2, len(self.window), ctx.layout_in)
        a = dilate_pad(a, groups, self.strides(), self._pads())
        return window_means(a, groups, self.window, (1,) * len(self.window), "valid")

    def apply(self, params, x, ctx):
        sw, sb = self.scales(ctx)
        rank = len(self.window)
        spatial = "HWD"[:rank] if rank <= 3 else None
        dn = (f"N{spatial}C", f"{spatial}IO", f"N{spatial}C")
        y = lax.conv_transpose(x, params["w"], self.strides(), self.padding.upper(), dimension_numbers=dn)
        return sw * y + self._bias(params, sb)

    def explain(self, ctx, ins):
        sigma, theta, note = super().explain(ctx, ins)
        return sigma, theta, note + "; window mean over the input dilated by the stride (neural-tangents ConvTranspose)"
