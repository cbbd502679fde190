"""infkernel: exact infinite-width kernels (NNGP and NTK) of architectures written
in a small text language, compiled to jitted JAX.

    import infkernel as ik
    kfn = ik.compile("specs/cntk_gap.ik", depth=3)
    k = kfn(x)           # k.nngp, k.ntk: (n, n) numpy arrays
"""
from .errors import SpecError, Where
from .graph import Graph, Node, Parallel, Repeat, Residual, build, op, serial
from .kernel import Kernel, KernelFn, compile
from .lang import parse
from .ops import (REGISTRY, Abrelu, Avgpool, Concat, Conv, Dense, Erf, Flatten, Gap, Gelu, Identity, Input,
                  Layernorm, LeakyRelu, Relu, Shape, Sin, Sum)

__version__ = "0.1.0"

__all__ = ["SpecError", "Where", "Graph", "Node", "Parallel", "Repeat", "Residual", "build", "op", "serial",
           "Kernel", "KernelFn", "compile", "parse", "REGISTRY", "Abrelu", "Avgpool", "Concat", "Conv", "Dense",
           "Erf", "Flatten", "Gap", "Gelu", "Identity", "Input", "Layernorm", "LeakyRelu", "Relu", "Shape", "Sin",
           "Sum"]
