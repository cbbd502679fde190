"""The architecture language: `parse(text_or_path, **overrides) -> Graph`."""
from .parser import parse, read_spec

__all__ = ["parse", "read_spec"]
