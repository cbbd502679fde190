"""Second new-user pass: mistakes that gave a silently meaningless answer or an error without a place.
Each test failed before its fix."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import infkernel as ik
from infkernel.cli import main
from infkernel.errors import SpecError
from infkernel.predict import kernel_regression, select_ridge

SPEC = str(Path(__file__).parents[1] / "specs" / "digits_mlp.ik")


def test_fit_with_one_training_class_is_refused(capsys):
    """`fit --n-train 1` trained on one class (all-zero one-hot targets), chose a 'leave-one-out' ridge
    among ties and printed an accuracy: every test example got that one class, whatever the kernel."""
    assert main(["fit", SPEC, "--data", "digits", "--n-train", "1", "--n-test", "10"]) == 2
    out = capsys.readouterr()
    assert "classification needs at least 2" in out.err and "--n-train" in out.err, out.err
    assert "accuracy" not in out.out


def test_fit_says_which_test_classes_the_training_set_lacks(capsys):
    assert main(["fit", SPEC, "--data", "digits", "--n-train", "2", "--n-test", "20", "--ridge", "1e-3"]) == 0
    err = capsys.readouterr().err
    assert "8 of the test set's 10 classes are absent from the training set" in err, err


def test_leave_one_out_ridge_of_one_example_is_refused():
    """With one example, leaving it out leaves nothing: every ridge had the same error and the largest won."""
    k, y = np.array([[2.0]]), np.array([1.0])
    with pytest.raises(SpecError, match="at least 2 training examples"):
        select_ridge(k, y)
    with pytest.raises(SpecError, match="at least 2 training examples"):
        kernel_regression(k, y, np.array([[0.5]]), ridge="auto")
    # a given ridge still works, and is the closed form k* (K + r)^-1 y
    assert kernel_regression(k, y, np.array([[0.5]]), ridge=0.5).mean == pytest.approx([0.2])


def test_block_call_without_its_arguments_names_the_line():
    """`f()` for `block f(a)` said 'block f needs a' with no line, column or caret."""
    text = "input 4\nblock f(a):\n    dense w_std=a\nf()\n"
    with pytest.raises(SpecError) as e:
        ik.parse(text)
    assert "line 4" in str(e.value) and "block f needs a" in str(e.value) and "f(a)" in str(e.value)
