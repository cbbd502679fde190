"""Subcommands of the `infkernel` CLI, one module each, plus their shared arguments."""
from __future__ import annotations

import argparse
import math

from ..errors import SpecError


def add_spec_arguments(parser: argparse.ArgumentParser) -> None:
    """SPEC and --set NAME=VALUE, shared by every command that reads a spec."""
    parser.add_argument("spec", metavar="SPEC", help="a spec file (.ik)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE",
                        help="override a `let` of the spec (repeatable)")


def overrides(args: argparse.Namespace) -> dict[str, float]:
    """The --set values as numbers."""
    values = {}
    for item in args.overrides:
        name, sep, text = item.partition("=")
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not sep or not name.isidentifier() or not math.isfinite(value):
            raise SpecError(f"--set takes NAME=NUMBER, got {item!r}")
        values[name] = int(value) if value.is_integer() else value
    return values
