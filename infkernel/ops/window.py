"""The base of every windowed op (conv, conv_transpose, conv_local, avgpool,
sumpool): one place for window, stride and padding, their checks, the output
extent and the random arguments the tests draw.

Subclasses declare the dataclass fields `window: tuple[int, ...]`,
`stride: tuple[int, ...] | int | None` and `padding: str`, and set
`paddings` (the accepted paddings) and `default_stride` ("one" or "window":
what an absent stride means).
"""
from __future__ import annotations

from typing import ClassVar

from .base import Op, Shape, check, padding_amounts

PADDINGS = ("valid", "same", "circular")


def dims_text(values) -> str:
    return "x".join(map(str, values))


class Windowed(Op):
    """Window, stride and padding of an op over the spatial axes."""

    paddings: ClassVar[tuple[str, ...]] = PADDINGS
    default_stride: ClassVar[str] = "one"  # "one" | "window"
    needs_spatial = True

    def strides(self) -> tuple[int, ...]:
        """The stride along each spatial axis."""
        if self.stride is None:
            return self.window if self.default_stride == "window" else (1,) * len(self.window)
        return self.stride if isinstance(self.stride, tuple) else (self.stride,) * len(self.window)

    def validate(self):
        check(len(self.window) >= 1 and min(self.window) >= 1,
              f"{self.name} window must be positive, got {self.window}")
        check(self.padding in self.paddings, f"unknown padding {self.padding!r} for {self.name}",
              f"expected one of {', '.join(self.paddings)}")
        if self.stride is not None:
            strides = self.stride if isinstance(self.stride, tuple) else (self.stride,)
            check(min(strides) >= 1, f"{self.name} stride must be positive, got {self.stride}")
            check(isinstance(self.stride, int) or len(self.stride) == len(self.window),
                  f"{self.name} stride {self.stride} and window {self.window} have different ranks")

    def out_spatial(self, s: Shape) -> tuple[int, ...]:
        """The output's spatial extent on an input of shape `s` (lax.conv's rule)."""
        check(s.rank > 0, f"{self.name} needs an input with spatial axes, got a vector of {s.channels}",
              "flatten/gap come after convolutions and pooling, not before")
        check(s.rank == len(self.window),
              f"a {len(self.window)}-D {self.name} window {self.window} on a {s.rank}-D input {s}")
        out = []
        for length, k, st in zip(s.spatial, self.window, self.strides()):
            n = padding_amounts(length, k, st, self.padding)[2]
            check(n >= 1, f"{self.name} window {self.window} is larger than its input {s} with {self.padding} padding")
            out.append(n)
        return tuple(out)

    def pads(self, spatial) -> list[tuple[int, int]]:
        """(lo, hi) padding of each spatial axis."""
        pad = "same" if self.padding == "circular" else self.padding
        return [padding_amounts(n, k, s, pad)[:2] for n, k, s in zip(spatial, self.window, self.strides())]

    # -- tests -------------------------------------------------------------------------
    @classmethod
    def draw_window(cls, gen, s, keep_shape: bool, first_window: int = 3) -> tuple[list[str], dict]:
        """Random window, padding and stride for state `s`: (argument texts,
        {window, stride, padding}). With keep_shape: same padding, stride 1."""
        window = tuple(gen.count(1, min(3, n), first_window) for n in s.spatial)
        paddings = [p for p in ("same", "circular", "valid") if p in cls.paddings]
        if keep_shape:
            paddings = [p for p in paddings if p != "valid"]
        padding = gen.pick(paddings)
        stride = None
        if not keep_shape and gen.flag():
            stride = tuple(gen.count(1, 2, 2) for _ in s.spatial)
        elif keep_shape and cls.default_stride == "window":
            stride = (1,) * s.rank
        args = [dims_text(window)]
        if padding != "valid" or gen.flag():
            args.append(padding)
        if stride is not None:
            args.append("stride=" + (dims_text(stride) if len(set(stride)) > 1 else str(stride[0])))
        return args, {"window": window, "stride": stride, "padding": padding}
