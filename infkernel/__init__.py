"""infkernel: exact infinite-width kernels (NNGP and NTK) of architectures written
in a small text language, compiled to jitted JAX.

    import infkernel as ik
    kfn = ik.compile("specs/cntk_gap.ik", depth=3)
    k = kfn(x)           # k.nngp, k.ntk: (n, n) numpy arrays
"""
from .errors import SpecError, Where
from .graph import Graph, Node, Parallel, Repeat, Residual, build, op, serial
from .kernel import Kernel, KernelFn, compile, open_kernel
from .lang import parse
from .ops import OPS, REGISTRY, Shape

globals().update(OPS)  # every op class by name: ik.Conv, ik.Relu, ...

__version__ = "0.1.0"

# Submodules with heavier imports load on first use: ik.datasets, ik.predict, ...
_SUBMODULES = ("datasets", "predict", "sklearn", "finite", "montecarlo", "testing", "training", "spectral",
               "symbolic", "explain", "features")


def __getattr__(name):
    import importlib
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name == "monte_carlo":
        return importlib.import_module(f"{__name__}.montecarlo").monte_carlo
    if name in ("features_cost", "choose_features"):  # the cost of a feature map, m sized from a budget
        return getattr(importlib.import_module(f"{__name__}.features.cost"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["SpecError", "Where", "Graph", "Node", "Parallel", "Repeat", "Residual", "build", "op", "serial",
           "Kernel", "KernelFn", "compile", "open_kernel", "parse", "REGISTRY", "Shape", *sorted(OPS)]
