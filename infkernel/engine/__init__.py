"""The engine: computes a kernel matrix piece by piece, within a memory budget.

One job per module:

- `plan`: how the work is cut (pair streams or square tiles), from the
  program's sizes and the memory budget; pure arithmetic.
- `local`: the in-process runner (`Engine`), on every local JAX device.
- `outputs`: where the kernels go (arrays in memory, memory-mapped .npy).
- `memory`, `precision`: budgets written by people, float32/float64.
"""
from .local import Engine
from .memory import UNITS, default_memory, memory_budget, parse_memory
from .outputs import Outputs, open_outputs, output_paths
from .plan import (Layout, input_bytes, node_entries, pair_bytes, pair_count, pair_seconds, pair_stream,
                   plan_blocks, plan_pairs, uses_pairs)
from .precision import precision

__all__ = ["Engine", "Layout", "UNITS", "default_memory", "input_bytes", "memory_budget", "node_entries", "Outputs", "open_outputs",
           "output_paths", "pair_bytes", "pair_count", "pair_seconds", "pair_stream", "parse_memory",
           "plan_blocks", "plan_pairs", "precision", "uses_pairs"]
