"""All ops. Importing this package imports every module in it, which fills
`REGISTRY`; each registered op class is exported under its class name, so a
new op is one module (see `infkernel.ops.base` on how to add one)."""
import importlib as _importlib
import pkgutil as _pkgutil

from .base import DIAG, PAIRS, REGISTRY, Cov, Ctx, Op, Shape

for _module in _pkgutil.iter_modules(__path__):
    _importlib.import_module(f"{__name__}.{_module.name}")

from .activations import Activation  # noqa: E402
from .linear import Affine  # noqa: E402
from .window import Windowed  # noqa: E402

OPS = {cls.__name__: cls for cls in REGISTRY.values()}
globals().update(OPS)

__all__ = ["REGISTRY", "OPS", "Op", "Shape", "Cov", "Ctx", "DIAG", "PAIRS", "Activation", "Affine", "Windowed",
           *sorted(OPS)]
