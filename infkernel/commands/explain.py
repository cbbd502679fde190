"""`infkernel explain SPEC [--latex]`: the recursion the spec compiles to."""
from ..explain import explain
from ..lang import parse
from . import add_spec_arguments, overrides


def add_arguments(parser):
    add_spec_arguments(parser)
    parser.add_argument("--latex", action="store_true", help="print LaTeX instead of text")


def run(args) -> int:
    print(explain(parse(args.spec, **overrides(args)), latex=args.latex))
    return 0
