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


def test_numpy_override_is_a_number():
    """`ik.compile(spec, depth=np.int64(2))` (a value from np.arange in a loop) said 'not a finite number'."""
    x = np.random.default_rng(0).normal(size=(3, 64))
    a = ik.compile(SPEC, depth=np.int64(2), w_std=np.float32(1.5))(x, dtype="float64")
    b = ik.compile(SPEC, depth=2, w_std=1.5)(x, dtype="float64")
    np.testing.assert_array_equal(a.ntk, b.ntk)
    with pytest.raises(SpecError, match="not a finite number"):
        ik.compile(SPEC, depth="2")


def test_python_ops_check_their_argument_types():
    """`ik.Conv(3)` failed with numpy/len TypeErrors deep in shape inference, and `ik.Dense(w_std="2")`
    was accepted (a string in the graph). An int window is the text's `conv 3`, a 1-D window."""
    with pytest.raises(SpecError, match=r"a 1-D conv window \(3,\) on a 2-D input"):
        ik.serial(ik.Conv(3), input_shape=(8, 8, 1))
    assert ik.Conv(3).window == (3,) and ik.Conv([3, 3], stride=np.int64(2)).window == (3, 3)
    with pytest.raises(SpecError, match="dense w_std must be a number, got '2'"):
        ik.Dense(w_std="2")
    with pytest.raises(SpecError, match="dense width must be an integer"):
        ik.Dense(width=2.5)
    with pytest.raises(SpecError, match="conv padding must be a string"):
        ik.Conv((3, 3), padding=1)
    # the same graph as the text, whatever Python number types built it
    text = ik.parse("input 8x8x1\nconv 3x3 same w_std=1.5\nrelu\ngap\ndense\n")
    built = ik.serial(ik.Conv([3, 3], padding="same", w_std=np.float64(1.5)), ik.Relu(), ik.Gap(), ik.Dense(),
                      input_shape=(8, 8, 1))
    assert built.summary() == text.summary()


def test_tiny_csv_of_classes_splits_without_a_traceback(tmp_path):
    """4 rows of 2 classes: the stratified split asked for a 1-example test set holding both classes and
    scikit-learn's ValueError ended `infkernel fit` in a traceback. Too small to stratify: a plain split."""
    from infkernel.datasets import load_csv

    (tmp_path / "d.csv").write_text("a,b,c\n1,2,x\n3,4,y\n5,6,x\n7,8,y\n")
    data = load_csv(tmp_path / "d.csv")
    assert len(data.x_train) == 3 and len(data.x_test) == 1
    big = "\n".join(f"{i},{i % 3},{'xyz'[i % 3]}" for i in range(40))
    (tmp_path / "e.csv").write_text(big)
    data = load_csv(tmp_path / "e.csv")  # large enough: still stratified, every class in both parts
    assert set(data.y_test.tolist()) == set(data.y_train.tolist()) and len(set(data.y_test.tolist())) == 3


def test_mc_with_one_network_is_refused(capsys):
    """`infkernel mc --samples 1` printed s.e. inf and a NOT CONVERGED verdict drawn from noise alone."""
    spec = str(Path(__file__).parents[1] / "specs" / "fc_erf.ik")
    assert main(["mc", spec, "--width", "8", "--samples", "1", "--n", "2"]) == 2
    assert "--samples 1 gives no standard error" in capsys.readouterr().err


def test_spectral_refuses_what_it_would_get_silently_wrong():
    """kernel_eigh of a non-symmetric matrix decomposed its lower triangle ([[1, 2], [0, 1]] gave
    eigenvalues 1, 1); mode_residuals at t < 0 grew; mode_projections of mismatched y was a numpy error."""
    from infkernel import spectral

    with pytest.raises(SpecError, match="not symmetric"):
        spectral.kernel_eigh(np.array([[1.0, 2.0], [0.0, 1.0]]))
    k = np.array([[2.0, 1.0], [1.0, 2.0]])
    lam, v = spectral.kernel_eigh(k)
    np.testing.assert_allclose(lam, [3.0, 1.0])  # closed form of [[2, 1], [1, 2]]
    with pytest.raises(SpecError, match="time >= 0"):
        spectral.mode_residuals(lam, np.ones(2), -1.0)
    with pytest.raises(SpecError, match=r"y has shape \(3,\)"):
        spectral.mode_projections(v, np.ones(3))


@pytest.mark.parametrize("degree", [0, 3, 100000])
def test_act_degree_out_of_range_is_a_spec_error_at_its_line(degree):
    """`act "tanh(x)" degree=3` passed `check` and ended `kernel` in a ValueError traceback; degree=0 was
    silently ignored (falsy: the automatic choice)."""
    text = f'input 4\ndense w_std=1.5\nact "tanh(x)" degree={degree}\ndense\n'
    with pytest.raises(SpecError, match=r"line 3.*quadrature degree .* must be an integer in 8\.\.4096"):
        ik.parse(text)
    with pytest.raises(SpecError, match="degree"):
        ik.symbolic.activation("tanh(x)", degree)


def test_layernorm_eps_enters_the_kernel_as_in_the_network():
    """`layernorm eps=E` normalised the finite network by sqrt(var + E) but the kernel ignored E (a factor
    of 2 at eps=1 and unit variances), and eps < 0 was accepted. Oracle: one wide NumPy network."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 4))
    width, eps = 200_000, 1.0
    h = x @ rng.normal(size=(4, width)) / 2.0  # dense, ntk parameterization: w / sqrt(fan_in = 4)
    z = (h - h.mean(1, keepdims=True)) / np.sqrt(h.var(1, keepdims=True) + eps)
    empirical = z @ z.T / width  # the readout dense's NNGP
    spec = f"input 4\ndense\nlayernorm eps={eps:g}\ndense\n"
    k = ik.compile(spec)(x, dtype="float64", get="nngp").nngp
    np.testing.assert_allclose(k, empirical, atol=0.01 * np.abs(empirical).max())
    assert np.abs(ik.compile("input 4\ndense\nlayernorm\ndense\n")(x, dtype="float64").nngp - empirical).max() > 0.1
    with pytest.raises(SpecError, match="line 3.*layernorm eps must be >= 0"):
        ik.parse("input 4\ndense\nlayernorm eps=-1\ndense\n")


def test_mc_says_when_width_cannot_change_the_networks(tmp_path, capsys):
    """Under the standard parameterization every layer names its width, so `mc --width 256` ran networks of
    the spec's width 8 while printing 'widths 64 and 256' and a two-width verdict from identical networks."""
    spec = tmp_path / "std.ik"
    spec.write_text("input 4\nparameterization standard\nlet w = 8\ndense width=w w_std=1.4\nrelu\ndense width=w\n")
    assert main(["mc", str(spec), "--width", "256", "--samples", "2", "--n", "2", "--quiet"]) == 2
    assert "changes nothing" in capsys.readouterr().err
    assert main(["mc", str(spec), "--width", "256", "--samples", "2", "--n", "2", "--quiet", "--one-width",
                 "--set", "w=16"]) == 0
    out = capsys.readouterr().out
    assert "networks at the spec's own widths" in out and "at width 256" not in out, out
