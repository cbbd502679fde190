"""The networks of the sharp Monte Carlo rule tests (tests/test_mc_rules.py).

Each case is a small network whose LAST op is the rule in focus (or a linear
pooling of it), so that the focus rule's output, scaled by 1 + e, scales the
network's kernel by 1 + e too. `out` is the width of the last dense/conv
layer: large for the NNGP (its estimate f f^T / n_out averages over the
output channels) and small for the NTK (whose cost grows with n_out and
whose estimate is already averaged over the hidden widths). Ops in the last
part of a case act per channel, so that their kernels do not depend on `out`.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Case:
    body: str  # the layers, with `out` (and `width` under the standard parameterization) as let names
    dims: tuple  # one example's input shape
    focus: tuple  # ops whose rule is last: scaling it scales the kernel
    covers: tuple  # every op (or block) the network exercises
    width: int = 256  # the Monte Carlo width (the narrow one is a quarter of it)
    n_samples: int = 256  # networks at the wide width (twice as many at the narrow one), NNGP
    ntk_samples: int = 256  # the same for the NTK
    out: int = 256  # output channels of the NNGP's networks (the NTK's have 2)

    @property
    def spec(self) -> str:
        return "let out = 2\n" + self.body


STD = "parameterization standard\nlet width = 256\n"

CASES = {
    "dense: act, relu": Case(
        "input 3\ndense w_std=1.4 b_std=0.1\nact \"erf(x) + 0.3*x\"\ndense w_std=1.3 b_std=0.2\nrelu\ndense width=out w_std=1.2\n",
        (3,), ("dense",), ("dense", "act", "relu"), n_samples=512),
    "dense, standard, no bias": Case(
        STD + "input 3\ndense width=width w_std=1.4\nerf\ndense width=out w_std=1.3 b_std=0\n",
        (3,), ("dense",), ("dense", "erf")),
    "conv 1-D same stride, valid, sumpool": Case(
        "input 5x2\nconv 3 same stride=2 w_std=1.4 b_std=0.2\nleaky_relu\nconv 2 valid width=out w_std=1.2\n"
        "sumpool 2 same stride=1\nflatten\n",
        (5, 2), ("conv", "sumpool", "flatten"), ("conv", "leaky_relu", "sumpool", "flatten")),
    "conv 1-D, standard, no bias": Case(
        STD + "input 5x2\nconv 3 same stride=2 width=width w_std=1.4\nabrelu a=-0.4 b=1.2\n"
        "conv 2 circular width=out w_std=1.2 b_std=0\nsumpool 2 same stride=1\ngap\n",
        (5, 2), ("conv", "sumpool", "gap"), ("conv", "abrelu", "sumpool", "gap")),
    "conv 2-D circular": Case(
        "input 3x3x2\nconv 2x2 circular w_std=1.3 b_std=0.2\ngelu\nconv 2x1 same width=out w_std=1.2\nidentity\n"
        "avgpool 2x2 same stride=1\ngap\n",
        (3, 3, 2), ("conv", "identity", "avgpool", "gap"), ("conv", "gelu", "identity", "avgpool", "gap"),
        n_samples=512),
    "conv 3-D valid stride": Case(
        "input 3x3x2x1\nconv 2x2x2 valid stride=1x2x1 w_std=1.3 b_std=0.2\nsin\nconv 1x1x1 width=out w_std=0.8\n"
        "global_sumpool\n",
        (3, 3, 2, 1), ("conv", "global_sumpool"), ("conv", "sin", "global_sumpool")),
    "layernorm, residual, concat": Case(
        "input 4x2\nconv 2 same w_std=1.3 b_std=0.2\nlayernorm\nrelu\nresidual:\n    conv 2 circular w_std=0.8\n"
        "    relu\n    conv 1 w_std=0.9\nparallel concat:\n    branch:\n        conv 2 same width=out w_std=1.1\n"
        "    branch:\n        dense width=out w_std=0.7 b_std=0.3\ngap\n",
        (4, 2), ("concat", "conv", "dense", "gap"), ("conv", "layernorm", "relu", "sum", "concat", "dense", "gap")),
    "attention": Case(
        "input 2x2\nconv 1 w_std=1.2 b_std=0.1\nrelu\nattention w_key_std=1.1 w_query_std=0.9 w_value_std=1.2 w_out_std=1.0"
        " b_std=0.1\nparallel sum:\n    branch:\n        conv 1 width=out w_std=1.1\n    branch:\n"
        "        conv 2 same width=out w_std=0.8\ngap\n",
        (2, 2), ("sum", "conv", "gap"), ("conv", "relu", "attention", "sum", "gap"),
        width=128, n_samples=1024, ntk_samples=512),
    "conv_local, conv_transpose": Case(
        "input 4x2\nconv_local 3 same stride=2 w_std=1.4 b_std=0.3\nrelu\n"
        "conv_transpose 2 same stride=2 width=out w_std=1.2\nflatten\n",
        (4, 2), ("conv_transpose", "flatten"), ("conv_local", "relu", "conv_transpose", "flatten")),
    "conv_local, conv_transpose, standard": Case(
        STD + "input 4x2\nconv_transpose 2 valid stride=2 width=width w_std=1.3 b_std=0.2\nrelu\n"
        "conv_local 2 circular width=out w_std=1.2\nflatten\n",
        (4, 2), ("conv_local", "flatten"), ("conv_transpose", "relu", "conv_local", "flatten")),
    "prod": Case(
        "input 3\nparallel prod:\n    branch:\n        dense w_std=1.3 b_std=0.2\n    branch:\n"
        "        dense w_std=0.8\ndense width=out w_std=0.9\n",
        (3,), ("dense",), ("prod", "dense"), width=1024, n_samples=512, out=64),
    "prod, standard": Case(
        STD.replace("256", "1024") + "input 3\nparallel prod:\n    branch:\n        dense width=width w_std=1.3 b_std=0\n"
        "    branch:\n        dense width=width w_std=0.8 b_std=0.3\ndense width=out w_std=0.9\n",
        (3,), ("dense",), ("prod", "dense"), width=1024, n_samples=512, out=64),
}
