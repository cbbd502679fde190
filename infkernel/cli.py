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


def _unrecognized(parser: argparse.ArgumentParser, unknown: list[str]) -> None:
    """parser.error (exit 2) naming the unknown arguments, with "did you mean" for options."""
    import difflib
    options = [o for action in parser._actions for o in action.option_strings if o.startswith("--")]
    hints = []
    for arg in unknown:
        if arg.startswith("--"):
            close = difflib.get_close_matches(arg.split("=")[0], options, n=1, cutoff=0.6)
            if close:
                hints.append(f"{arg.split('=')[0]}: did you mean {close[0]}?")
    parser.error(f"unrecognized arguments: {' '.join(unknown)}" + (f" ({'; '.join(hints)})" if hints else ""))


def main(argv: list[str] | None = None) -> int:
    from . import __version__

    parser = argparse.ArgumentParser(prog="infkernel", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"infkernel {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    available, subparsers = {}, {}
    for name, help_text in COMMANDS.items():
        try:
            module = _module(name)
        except ModuleNotFoundError as e:
            if e.name == f"infkernel.commands.{name}":
                continue  # not built yet
            raise
        subparsers[name] = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(subparsers[name])
        available[name] = module
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # the command's own usage, and the nearest option for each typo
        _unrecognized(subparsers[args.command], unknown)
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
