"""Memory budgets: sizes written by people ("2GB") and the default budget."""
from __future__ import annotations

import re

from ..errors import SpecError

UNITS = {"": 1, "B": 1, "K": 2**10, "KB": 2**10, "M": 2**20, "MB": 2**20, "G": 2**30, "GB": 2**30,
         "T": 2**40, "TB": 2**40}


def parse_memory(memory) -> int:
    """Bytes from 2e9, "2GB", "512MB", "1.5G"."""
    if isinstance(memory, (int, float)) and not isinstance(memory, bool):
        if memory <= 0:
            raise SpecError(f"memory must be positive, got {memory}")
        return int(memory)
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:E[0-9]+)?)\s*([KMGT]?B?)\s*", str(memory).upper())
    if not m:
        raise SpecError(f"cannot read memory size {memory!r}", hint="write e.g. 2GB or 512MB")
    if float(m.group(1)) <= 0:
        raise SpecError(f"memory must be positive, got {memory!r}", hint="write e.g. 2GB or 512MB")
    return int(float(m.group(1)) * UNITS[m.group(2)])


def memory_budget(memory=None) -> int:
    """Bytes of `memory` ("2GB", 2e9, ...; `parse_memory`), or `default_memory()` when None."""
    return parse_memory(memory) if memory is not None else default_memory()


def default_memory() -> int:
    """A quarter of the memory available now, between 256 MiB and 4 GiB."""
    try:
        import psutil
        available = psutil.virtual_memory().available
    except Exception:  # psutil missing or unsupported platform
        available = 8 * 2**30
    return int(min(max(available / 4, 2**28), 4 * 2**30))
