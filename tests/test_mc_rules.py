"""Monte Carlo checks of the kernel rules that catch a rule 5 % off (issue 15, "tests that cannot fail").

Every op family, in 1-D/2-D/3-D inputs, valid/same/circular padding, strides, layers without a bias and
both parameterizations (the networks: tests/mc_rule_cases.py), against finite networks at width 256
(a quarter of it for the O(1/width) bias, see `infkernel.testing.compare_monte_carlo`), a few hundred
networks per width evaluated in batches (`monte_carlo(batch=)`). Each case ends in the rule in focus,
so that a rule scaled by 1 + e scales the network's kernel by 1 + e:

- test_rules_match_monte_carlo_to_5_percent: the check passes, and it would flag the NNGP and the NTK
  scaled by 1.05 and by 0.95 (`Comparison.scaled`); the smallest error it flags in both directions
  (`Comparison.detectable`) is at most 5 % for every case and kind (measured: `python
  tests/test_mc_rules.py` prints the table);
- test_a_rule_broken_on_purpose_fails: the focus op's rule itself is scaled (NNGP and NTK separately,
  by 1.05 and 0.95, through its class's `kernel`), the kernels recompiled, and the same Monte Carlo
  data rejects them.

`python tests/test_mc_rules.py` also breaks every op of every case (not only the focus) and prints
what the check says of each; ops before the last layer reach the kernel diluted (an activation's NTK
rule by the last layer's own term), so that table records, not asserts, those.

Measured (2026-11-30, loaded 2-core machine): resolution 1.6-4.5 %, detectable 1.7-4.8 % over the 13
cases and both kinds (closest: attention's NNGP 4.80 %); every focus rule broken by 1.05 or 0.95 fails,
in both kinds. Broken rules of ops before the last layer: every NNGP one fails but relu x1.05 before
attention (the kernel moves 6 % at most, less at the best-resolved entry) and the dense branch of the
concat (2.7 %); an NTK one that the last layer dilutes below ~2 % passes (the activations' NTK rules,
conv_transpose/prod before a standard last layer). The file takes ~160 s of CPU (user time).
"""
from __future__ import annotations

import functools
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

import infkernel as ik
from infkernel.ops import REGISTRY
from infkernel.ops.base import Cov
from infkernel.testing import compare_monte_carlo

sys.path.insert(0, str(Path(__file__).parent))
from mc_rule_cases import CASES  # noqa: E402

KINDS = ("nngp", "ntk")
TARGET = 0.05  # a rule this far off must fail


def inputs(name):
    return np.random.default_rng(0).normal(size=(2,) + CASES[name].dims)


@functools.lru_cache(maxsize=None)
def comparison(name: str, kind: str):
    """The check of one case and kind (computed once per session); the NNGP's networks have `out` output
    channels, the NTK's 2."""
    case = CASES[name]
    [c] = compare_monte_carlo(case.spec, inputs(name), width=case.width, get=kind,
                              n_samples=case.n_samples if kind == "nngp" else case.ntk_samples,
                              batch=64, out=case.out if kind == "nngp" else 2,
                              analytic=lambda graph, x1, x2, get: exact(name, graph.lets.get("width")))
    return c


@functools.lru_cache(maxsize=None)
def exact(name: str, width) -> ik.Kernel:
    """Both analytic kernels of a case (at `width` under the standard parameterization), compiled once."""
    return kernels(name, width)


def kernels(name: str, width) -> ik.Kernel:
    """Both analytic kernels, compiled now (after any patch of a rule)."""
    spec = CASES[name].spec
    graph = ik.parse(spec) if width is None else ik.parse(spec, width=width)
    return ik.compile(graph)(inputs(name), dtype="float64")


def analytic(name: str, kind: str, cached: bool = False) -> tuple:
    """One kind's analytic kernels at the check's two widths."""
    widths = comparison(name, kind).widths if "width" in ik.parse(CASES[name].spec).lets else (None, None)
    return tuple(getattr((exact if cached else kernels)(name, w), kind) for w in widths)


@contextmanager
def broken(op: str, nngp: float = 1.0, ntk: float = 1.0):
    """The rule of `op` with its NNGP output times `nngp` and its NTK output times `ntk`."""
    cls = REGISTRY[op]
    attr = "kernel_fanin" if cls.arity == -1 else "kernel"
    rule = getattr(cls, attr)

    def scaled(self, *args, **kwargs):
        k = rule(self, *args, **kwargs)
        return Cov(k.nngp * nngp, None if k.ntk is None else k.ntk * ntk, k.var1, k.var2)

    setattr(cls, attr, scaled)
    try:
        yield
    finally:
        setattr(cls, attr, rule)


def test_cases_cover_every_op():
    """Every registered op (but the input) is in some case, in both parameterizations where it has both,
    and each case holds the ops it claims; each case ends in its focus op, whose rule is then last."""
    have = {p: set() for p in ("ntk", "standard")}
    for name, case in CASES.items():
        graph = ik.parse(case.spec)
        ops = {n.op.name for n in graph.nodes}
        assert set(case.covers) | set(case.focus) <= ops, (name, ops)
        have[graph.parameterization] |= set(case.covers)
    for op, cls in REGISTRY.items():
        if op != "input":
            assert op in have["ntk"] | have["standard"], op
    # the affine layers, their joins and pooling in the standard parameterization too
    assert {"dense", "conv", "conv_local", "conv_transpose", "prod", "sumpool", "flatten", "gap"} <= have["standard"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_rules_match_monte_carlo_to_5_percent(name):
    for kind in KINDS:
        c = comparison(name, kind)
        assert c.ok, c.worst()
        assert c.resolution <= TARGET, (kind, c.resolution)
        assert c.detectable() <= TARGET, (kind, c.detectable())
        for factor in (1 + TARGET, 1 - TARGET):
            assert not c.scaled(factor).ok, (kind, factor)


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_rule_broken_on_purpose_fails(name):
    """The focus op's rule with its NNGP, then its NTK, 5 % off (the cases alternate 1.05 and 0.95, so
    that each kind is broken both ways): the kernel moves the same way, and the same Monte Carlo data
    rejects it."""
    op = CASES[name].focus[0]
    factor = 1 + TARGET if sorted(CASES).index(name) % 2 == 0 else 1 - TARGET
    for kind in KINDS:
        with broken(op, **{kind: factor}):
            wrong = analytic(name, kind)
        right = analytic(name, kind, cached=True)
        effect = [w / r - 1 for w, r in zip(wrong, right)]
        assert all(np.all(np.sign(e) == np.sign(factor - 1)) for e in effect), (op, kind, factor, effect)
        assert not comparison(name, kind).against(wrong).ok, (op, kind, factor, effect)


def sweep() -> None:  # pragma: no cover - run by hand: python tests/test_mc_rules.py
    """The table of the module docstring: per case and kind, the resolution, the detectable error and
    what the check says of every op of the case broken by 1.05 and 0.95."""
    for name, case in CASES.items():
        for kind in KINDS:
            c = comparison(name, kind)
            verdicts = []
            for op in case.covers:
                for factor in (1 + TARGET, 1 - TARGET):
                    with broken(op, **{kind: factor}):
                        wrong = analytic(name, kind)
                    right = analytic(name, kind, cached=True)
                    effect = max(float(np.max(np.abs(w / r - 1))) for w, r in zip(wrong, right))
                    verdicts.append(f"{op}x{factor:g}:{'FAIL' if not c.against(wrong).ok else 'pass'}"
                                    f"({100 * effect:.1f}%)")
            print(f"{name} | {kind} | ok {c.ok} | resolution {100 * c.resolution:.2f}% | detectable "
                  f"{100 * c.detectable():.2f}% | " + " ".join(verdicts), flush=True)


if __name__ == "__main__":  # pragma: no cover
    sweep()
