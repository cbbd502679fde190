"""All ops. Importing this package fills `REGISTRY`."""
from .base import DIAG, PAIRS, REGISTRY, Cov, Ctx, Op, Shape
from .act import Act
from .activations import Abrelu, Activation, Erf, Gelu, Identity, LeakyRelu, Relu, Sin
from .linear import Conv, Dense
from .normalization import Layernorm
from .pooling import Avgpool, Flatten, Gap
from .structure import Concat, Input, Sum

__all__ = ["REGISTRY", "Op", "Shape", "Cov", "Ctx", "DIAG", "PAIRS", "Act", "Activation", "Abrelu", "Avgpool",
           "Concat", "Conv", "Dense", "Erf", "Flatten", "Gap", "Gelu", "Identity", "Input", "Layernorm",
           "LeakyRelu", "Relu", "Sin", "Sum"]
