"""The dtype a kernel is computed in, without touching the caller's JAX configuration."""
from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp

from ..errors import SpecError


@contextlib.contextmanager
def precision(dtype: str):
    """float64 inside, without changing the caller's JAX configuration."""
    if dtype == "float32":
        yield jnp.float32
    elif dtype == "float64":
        enable = getattr(jax, "enable_x64", None)
        if enable is None:
            from jax.experimental import enable_x64 as enable
        with enable(True):
            yield jnp.float64
    else:
        raise SpecError(f"dtype must be float32 or float64, got {dtype!r}")
