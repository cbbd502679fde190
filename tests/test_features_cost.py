"""The cost of a feature map counted from its rules (`ik.features_cost`) and m
sized from a budget (`choose_features`, `--features auto`), issue 14.

Oracles: XLA's own cost analysis of the compiled map (`FeatureMap.cost`),
per node and in total; the closed forms of docs/features.md for the dominant
terms (2 P |T| m (d + e) for a random convolution, 2 m (d + e) for random
features); the budget arithmetic re-done by hand with fixed rates."""
import numpy as np
import pytest

import infkernel as ik
from infkernel.errors import SpecError
from infkernel.features.cost import GRID, SOLVE_CUBES

CNTK = ("input 5x5x2\nconv 3x3 same w_std=1.4 b_std=0.1\nrelu\nconv 3x3 circular w_std=1.3\nrelu\n"
        "avgpool 2x2 stride=1\ngap\ndense\n")
MLP = "input 6\ndense w_std=1.5 b_std=0.5\nrelu\ndense w_std=1.2\nrelu\ndense\n"


@pytest.mark.parametrize("spec, m", [(CNTK, 64), (CNTK, 256), (MLP, 128)])
def test_counts_agree_with_xla(spec, m):
    ours = ik.features_cost(spec, m)
    xla = ik.features(spec, m).cost()
    for layer, row in zip(ours.layers[:-1], xla[:-1]):  # XLA's rows leave out the output projection
        assert layer.floats == row["floats"] and layer.param_floats == row["param_floats"]
        assert layer.flops == pytest.approx(row["flops"], rel=0.35, abs=3e4), (layer, row)
    assert ours.flops == pytest.approx(sum(r["flops"] for r in xla) + ours.layers[-1].flops
                                       - xla[-1]["flops"], rel=0.01)


def test_dominant_terms_are_the_documented_closed_forms():
    m = 256
    cost = ik.features_cost(CNTK, m)
    positions, taps = 25, 9
    d = e = m  # relu features (nngp and the ntk sketch) entering the second conv
    assert cost.layers[3].flops == pytest.approx(2 * positions * taps * m * (d + e), rel=1e-3)
    # relu after the second conv: u = Phi W with Phi (m + 0 bias) and the NTK sketch (2m + ... ) R
    assert cost.layers[4].flops == pytest.approx(2 * positions * m * (m + 2 * m), rel=0.02)
    double = ik.features_cost(CNTK, 2 * m)
    assert double.flops / cost.flops == pytest.approx(4, rel=0.05)  # quadratic in m


def test_choice_is_the_largest_m_within_the_budget():
    rates = (1e9, 1e10)
    choice = ik.choose_features(MLP, 1000, 500, budget_seconds=2.0, rates=rates)
    assert choice.seconds <= 2.0 and f"m={choice.m}" in choice.reason
    nxt = GRID[GRID.index(choice.m) + 1]
    cost = ik.features_cost(MLP, nxt)
    by_hand = 1500 * cost.flops / 1e9 + (2 * 1000 * cost.dim ** 2 + SOLVE_CUBES * cost.dim ** 3) / 1e10
    assert by_hand > 2.0 and f"m={nxt} would need" in choice.reason
    small = ik.choose_features(MLP, 1000, 500, budget_seconds=2.0, budget_gb=0.005, rates=rates)
    assert small.m < choice.m and small.bytes <= 5e6 and "GB >" in small.reason


@pytest.mark.parametrize("kwargs, match", [({}, "needs a budget"), ({"budget_seconds": -1}, "positive"),
                                           ({"budget_seconds": 1e-9}, "does not fit")])
def test_bad_budgets(kwargs, match):
    with pytest.raises(SpecError, match=match):
        ik.choose_features(MLP, 100, **kwargs, rates=(1e9, 1e9))


def test_cli_features_auto(capsys):
    from infkernel.cli import main
    assert main(["fit", "specs/digits_mlp.ik", "--data", "digits", "--n-train", "200", "--n-test", "100",
                 "--features", "auto", "--budget-seconds", "5", "--dtype", "float32"]) == 0
    out = capsys.readouterr().out
    line = next(s for s in out.splitlines() if s.startswith("features  auto: m="))
    m = int(line.split("m=")[1].split(":")[0])
    assert f"m={m} (dim" in out and "within 5 s" in line and "accuracy" in out
    assert main(["fit", "specs/digits_mlp.ik", "--data", "digits", "--n-train", "50", "--features", "8",
                 "--budget-gb", "1"]) != 0
    assert "--features auto" in capsys.readouterr().err


def test_sklearn_n_features_auto():
    from infkernel.sklearn import KernelRegressor
    x = np.random.default_rng(0).normal(size=(60, 6))
    reg = KernelRegressor(MLP, n_features="auto", budget_seconds=3.0).fit(x, np.sin(x[:, 0]))
    assert reg.features_.n_features in GRID and "within 3 s" in reg.features_choice_
