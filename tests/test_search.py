"""Hyperparameter search on a validation split of the training set (issue 17): infkernel.search and
`infkernel fit --search`. Oracles: a synthetic problem whose true depth is known (targets drawn from the
depth-d NNGP of a squaring network, whose function space is the polynomials of degree 2^d), and the
test set's labels, which must not change anything the search chooses."""
from __future__ import annotations

import re

import numpy as np
import pytest

import infkernel as ik
from infkernel.cli import main
from infkernel.errors import SpecError
from infkernel.search import grid, parse_axes, search

D = 5
SQUARING = f'input {D}\nlet depth = 1\nrepeat depth:\n    dense w_std=1 b_std=0\n    act "x**2"\ndense w_std=1\n'


def gp_sample(true_depth: int, n: int = 200, seed: int = 0):
    """Inputs on the sphere of radius sqrt(D) and a draw from the depth-`true_depth` NNGP, plus noise 1e-3 of its RMS."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, D))
    x *= np.sqrt(D) / np.linalg.norm(x, axis=1, keepdims=True)
    k = ik.compile(SQUARING, depth=true_depth)(x, get="nngp").nngp
    w, v = np.linalg.eigh(k)
    y = v @ (np.sqrt(np.maximum(w, 0)) * rng.normal(size=n))
    return x, y + 1e-3 * np.sqrt(np.mean(np.diag(k))) * rng.normal(size=n)


@pytest.mark.parametrize("true_depth", [1, 2, 3])
def test_search_picks_the_true_depth(true_depth):
    """Depth d's NNGP spans polynomials of degree <= 2^d: a shallower one cannot fit the draw, a deeper one
    spends its examples on degrees the draw lacks (measured: validation mse ratios 2x to 1000x)."""
    x, y = gp_sample(true_depth)
    lines = []
    result = search(SQUARING, x, y, {"depth": [1, 2, 3]}, validation=0.25, kernel="nngp", say=lines.append)
    assert result.best.lets == {"depth": true_depth}, result.table()
    assert [c.lets["depth"] for c in result.candidates] == [1, 2, 3]
    assert result.best.accuracy is None and result.n_search == 200 and result.n_held == 50
    assert sum(line.startswith("candidate ") for line in lines) == 3 and "ridge" in lines[-1]
    assert result.table().splitlines()[1 + [1, 2, 3].index(true_depth)].endswith("*")


def test_grid_and_axes():
    assert parse_axes(["depth=1,2", "w_std=1.2,1.5"]) == {"depth": (1, 2), "w_std": (1.2, 1.5)}
    assert grid({"a": (1, 2), "b": (3,)}) == [{"a": 1, "b": 3}, {"a": 2, "b": 3}]
    for bad in (["depth"], ["depth=1,x"], ["2x=1"], ["depth=1", "depth=2"]):
        with pytest.raises(SpecError, match="--search"):
            parse_axes(bad)


def test_unknown_let_is_a_clear_error_before_any_kernel():
    x, y = gp_sample(1, n=20)
    with pytest.raises(SpecError, match="did you mean 'depth'"):
        search(SQUARING, x, y, {"dpth": [1, 2]})
    with pytest.raises(SpecError, match="both fixed"):
        search(SQUARING, x, y, {"depth": [1, 2]}, lets={"depth": 3})


def _digits_npz(path, garbage_test_labels: bool):
    from sklearn.datasets import load_digits

    d = load_digits()
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(d.target))
    train, test = idx[:300], idx[300:400]
    y_test = rng.integers(0, 10, size=100) if garbage_test_labels else d.target[test]
    np.savez(path, x_train=d.data[train] / 16, y_train=d.target[train], x_test=d.data[test] / 16, y_test=y_test)


def _fit(capsys, argv):
    assert main(argv) == 0
    out = capsys.readouterr().out
    return out, float(re.search(r"accuracy\s+([0-9.]+)", out).group(1))


def test_cli_search_never_touches_the_test_set(tmp_path, capsys):
    """Garbage test labels leave the whole search (table, winner, ridge) unchanged; only the test score moves."""
    spec = tmp_path / "mlp.ik"
    spec.write_text("input 64\nlet depth = 1\nlet w_std = sqrt(2)\nrepeat depth:\n    dense w_std=w_std b_std=0.1\n"
                    "    relu\ndense w_std=1\n")
    outs = {}
    for garbage in (False, True):
        _digits_npz(tmp_path / f"d{garbage}.npz", garbage)
        outs[garbage] = _fit(capsys, ["fit", str(spec), "--data", str(tmp_path / f"d{garbage}.npz"), "--kernel", "nngp",
                                      "--search", "depth=1,3", "--search", "w_std=1.2,1.6", "--validation", "0.2"])
    (good, acc_good), (bad, acc_bad) = outs[False], outs[True]
    def searched(out):  # the search's report less its seconds column
        return re.sub(r"\s+\d+\.\d( \*)?$", r"\1", out[out.index("search "): out.index("kernel ")], flags=re.M)
    assert searched(good) == searched(bad)
    assert "4 candidates on 300 of 300 training examples, 60 held out" in good
    assert acc_good > 0.9 and acc_bad < 0.3
    assert "ridge chosen by the search" in good


def test_cli_search_unknown_let_exits_2(tmp_path, capsys):
    _digits_npz(tmp_path / "d.npz", False)
    code = main(["fit", "specs/digits_mlp.ik", "--data", str(tmp_path / "d.npz"), "--search", "dpth=1,2"])
    assert code == 2 and "did you mean 'depth'" in capsys.readouterr().err


def test_specs_take_w_std_and_b_std_lets_unchanged():
    """specs/fc_relu.ik and digits_mlp.ik with lets give the kernels of their former literal values."""

    for path, depth in (("specs/fc_relu.ik", 3), ("specs/digits_mlp.ik", 1)):
        text = open(path).read()
        inp = re.search(r"^input (\d+)", text, re.M).group(1)
        old = f"input {inp}\nparameterization ntk\nrepeat {depth}:\n    dense w_std=sqrt(2) b_std=0.1\n    relu\n" \
              "dense w_std=1\n"
        xs = np.random.default_rng(0).normal(size=(6, int(inp)))
        new_k, old_k = ik.compile(path)(xs), ik.compile(old)(xs)
        np.testing.assert_array_equal(new_k.ntk, old_k.ntk)
        np.testing.assert_array_equal(new_k.nngp, old_k.nngp)
        moved = ik.compile(path, w_std=1.2, b_std=0.3)(xs)
        assert not np.allclose(moved.nngp, old_k.nngp)



def test_metric_ranks_classes_by_accuracy_or_mse():
    """Two candidates, one better in held-out accuracy, the other in mse: each metric picks its own."""
    from infkernel.search import Candidate

    a = Candidate({"depth": 1}, 0.1, mse=0.030, accuracy=0.80, excluded=0, seconds=0.0)
    b = Candidate({"depth": 2}, 0.1, mse=0.020, accuracy=0.70, excluded=0, seconds=0.0)
    assert min((a, b), key=lambda c: c.score("accuracy")) is a
    assert min((a, b), key=lambda c: c.score("mse")) is b
    x, y = gp_sample(1, n=20)
    with pytest.raises(SpecError, match="metric"):
        search(SQUARING, x, y, {"depth": [1]}, metric="error")
