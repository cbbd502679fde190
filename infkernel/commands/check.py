"""`infkernel check SPEC`: print the layer graph, or the error in the spec."""
from ..lang import parse
from . import add_spec_arguments, overrides


def add_arguments(parser):
    add_spec_arguments(parser)


def run(args) -> int:
    print(parse(args.spec, **overrides(args)).summary())
    return 0
