"""The `infkernel` command line. Each subcommand lives in infkernel/commands/<name>.py
and exposes `add_arguments(parser)` and `run(args) -> int`."""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from .errors import SpecError

DESCRIPTION = """\
Exact infinite-width NNGP and NTK kernels of a network written in a small text language
(a .ik spec file; see the README). `infkernel COMMAND --help` describes each command."""

EPILOG = """\
examples:
  infkernel check specs/digits_cntk.ik              the layer graph, or the error in the spec
  infkernel kernel specs/digits_cntk.ik --out K.npz  NNGP and NTK on a bundled example
  infkernel fit specs/digits_cntk.ik --data digits   kernel regression on a dataset"""

COMMANDS = {
    "check": "print the layer graph of a spec, or the error in it",
    "kernel": "compute the NNGP and NTK of a spec on inputs",
    "status": "how far a kernel store (K.zarr) has got, and whether it is complete",
    "explain": "print the recursion a spec compiles to",
    "mc": "compare analytic kernels with Monte Carlo estimates from finite networks",
    "fit": "kernel regression with a spec's kernel on a dataset",
    "compare": "train finite networks of several widths and measure how far they leave their kernel",
    "bench": "time the engine on the benchmark workloads, optionally against neural-tangents",
}


def _module(name: str):
    return importlib.import_module(f"infkernel.commands.{name}")


def main(argv: list[str] | None = None) -> int:
    from . import __version__

    parser = argparse.ArgumentParser(prog="infkernel", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"infkernel {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    available = {}
    for name, help_text in COMMANDS.items():
        try:
            module = _module(name)
        except ModuleNotFoundError as e:
            if e.name == f"infkernel.commands.{name}":
                continue  # not built yet
            raise
        module.add_arguments(sub.add_parser(name, help=help_text, description=help_text))
        available[name] = module
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = lambda message, category, *_, **__: print(  # no source line: a user's view
                f"infkernel {args.command}: warning ({category.__name__}): {message}", file=sys.stderr)
            return int(available[args.command].run(args) or 0)
    except SpecError as e:
        print(f"infkernel {args.command}: error: {e}", file=sys.stderr)
        return 2
    except (FileNotFoundError, IsADirectoryError, PermissionError) as e:
        print(f"infkernel {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # commands with something to say about what was kept catch it themselves
        print(f"\ninfkernel {args.command}: interrupted (Ctrl-C)", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
