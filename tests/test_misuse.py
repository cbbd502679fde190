"""What a new user plausibly gets wrong: each mistake ends in one clear error naming it, before
any long work, and never in a silently ignored option or a traceback from numpy or matplotlib."""
from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest

import infkernel as ik
from infkernel.cli import main
from infkernel.datasets import load_csv, load_npz
from infkernel.errors import SpecError

SPEC = str(Path(__file__).parents[1] / "specs" / "digits_mlp.ik")
SMALL = ["--data", "digits", "--n-train", "30", "--n-test", "10"]


@pytest.mark.parametrize("extra, named", [
    (["--features", "32", "--search", "depth=1,2"], "--search"),
    (["--features", "32", "--solver", "cholesky"], "--solver"),
    (["--features", "32", "--cv", "5"], "--cv"),
    (["--budget-seconds", "5"], "--budget-seconds"),
    (["--features", "32", "--validation", "1.5"], "--validation"),
    (["--feature-width", "64"], "--feature-width"),
])
def test_fit_refuses_options_it_would_ignore(capsys, extra, named):
    """--features solved silently without the --search asked for (and without --solver, --cv); a budget
    without --features auto was dropped; a bad --validation passed on the features path."""
    assert main(["fit", SPEC, *SMALL, *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("infkernel fit: error: ") and named in err, err


@pytest.fixture
def xy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 4))
    return x, (x[:, 0] > 0).astype(int)


def test_npz_with_fewer_targets_than_examples_is_refused(tmp_path, xy):
    x, y = xy
    np.savez(tmp_path / "d.npz", x_train=x[:20], y_train=y[:15], x_test=x[20:], y_test=y[20:])
    with pytest.raises(SpecError, match=r"x_train has shape \(20, 4\) and y_train \(15,\)"):
        load_npz(tmp_path / "d.npz")
    np.savez(tmp_path / "e.npz", x=x, y=y[:-1])
    with pytest.raises(SpecError, match="one target per example"):
        load_npz(tmp_path / "e.npz")


def test_npz_with_text_or_nan_features_is_a_spec_error(tmp_path, xy):
    x, y = xy
    np.savez(tmp_path / "s.npz", x=np.array([["a"] * 4] * 30), y=y)
    with pytest.raises(SpecError, match="x must hold real numbers"):
        load_npz(tmp_path / "s.npz")
    x = x.copy()
    x[7, 2] = np.nan
    np.savez(tmp_path / "n.npz", x_train=x[:20], y_train=y[:20], x_test=x[20:], y_test=y[20:])
    with pytest.raises(SpecError, match="x_train contains NaN or inf.*row 7"):
        load_npz(tmp_path / "n.npz")


def test_csv_with_nan_features_names_the_row(tmp_path):
    rows = [f"{i},{'nan' if i == 3 else i * 2},{i % 2}" for i in range(20)]
    (tmp_path / "d.csv").write_text("a,b,c\n" + "\n".join(rows))
    with pytest.raises(SpecError, match="NaN or inf.*data row 4"):
        load_csv(tmp_path / "d.csv")


def _alarm(seconds: int):
    def raise_timeout(*_):
        raise TimeoutError(f"still running after {seconds} s")
    signal.signal(signal.SIGALRM, raise_timeout)
    signal.alarm(seconds)


@pytest.mark.parametrize("body", [
    "repeat 1000000000:\n    dense\n    relu\n", "repeat 10**100:\n    dense\n",
    "repeat 1000:\n    dense\n    repeat 1000:\n        relu\n",
])
def test_a_huge_repeat_is_refused_at_once(body):
    """`repeat 1000000000:` (a typo) unrolled for hours before; now a SpecError at the repeat."""
    _alarm(20)
    try:
        with pytest.raises(SpecError, match="unrolls to .* nodes, over the limit") as e:
            ik.parse(f"input 4\n{body}dense\n")
    finally:
        signal.alarm(0)
    assert "line 2" in str(e.value)


def test_sklearn_takes_images_and_their_rows_alike():
    """README: one input rule, in the estimators too. Fitted on (n, 8, 8, 1) images, predicting on their
    (n, 64) rows raised 'X has 64 features, but KernelClassifier is expecting 8 features'."""
    from infkernel.sklearn import KernelClassifier
    d = ik.datasets.load_digits()
    x, y, probe = d.x_train[:40], d.y_train[:40], d.x_test[:8]
    clf = KernelClassifier(SPEC, ridge=1e-3).fit(x, y)
    assert clf.n_features_in_ == 64
    np.testing.assert_array_equal(clf.predict(probe.reshape(8, 64)), clf.predict(probe))
    flat = KernelClassifier(SPEC, ridge=1e-3).fit(x.reshape(40, 64), y)
    np.testing.assert_allclose(flat.decision_function(probe), clf.decision_function(probe), rtol=1e-12)
    with pytest.raises(ValueError, match="63 features, but KernelClassifier is expecting 64"):
        clf.predict(probe.reshape(8, 64)[:, :63])


def test_compare_refuses_a_picture_name_before_training(capsys):
    """--out c.txt trained every width, then died in matplotlib with a traceback."""
    argv = ["compare", SPEC, "--data", "digits", "--widths", "4", "--steps", "1", "--n-train", "8",
            "--n-test", "8", "--probe", "2", "--out"]
    assert main([*argv, "c.txt"]) == 2
    err = capsys.readouterr().err
    assert "error: --out c.txt" in err and ".png" in err and "width 4" not in err
    assert main([*argv, "/no/such/folder/c.png"]) == 2
    assert "folder /no/such/folder does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("path, reason", [(".", "it is a folder"), ("no/such.txt", "no such file"),
                                          ("nope.ik", "no such file")])
def test_a_spec_path_that_is_not_a_file_says_so(path, reason):
    """A folder was parsed as spec text ('unexpected /', 'layers come after the input line')."""
    with pytest.raises(SpecError, match=f"cannot read spec file {path}: {reason}"):
        ik.parse(path)


def test_cg_with_ridge_zero_on_a_singular_kernel_stops_at_the_breakdown():
    """Ran 1000 iterations of 'relative residual nan' before; now stops at the first one, saying why."""
    a = np.random.default_rng(0).normal(size=(12, 3))
    k = a @ a.T  # rank 3
    y = np.eye(12)[:, :2]
    with pytest.raises(SpecError, match="broke down at iteration 1.*ridge 0"):
        ik.predict.kernel_regression(k, y, k[:4], np.inf, ridge=0.0, solver="cg")


@pytest.mark.parametrize("expr, message", [
    ("sqrt(-1)", "sqrt is not defined at -1"), ("log(0)", "log is not defined at 0"),
    ("10**10**10", "out of range \\(over about 1.8e308\\)"), ("(-8)**0.5", "a complex number"),
])
def test_arithmetic_errors_in_specs_say_what_went_wrong(expr, message):
    """Python's 'math domain error' and '(34, Numerical result out of range)' reached the user."""
    with pytest.raises(SpecError, match=message):
        ik.parse(f"input 4\ndense w_std={expr}\n")


def test_a_classifier_fitted_on_one_class_is_refused_as_scikit_learn_does():
    from infkernel.sklearn import KernelClassifier
    x = np.random.default_rng(0).normal(size=(10, 4))
    with pytest.raises(ValueError, match="at least 2 classes"):
        KernelClassifier("input 4\ndense\nrelu\ndense\n").fit(x, np.zeros(10, int))


def test_a_mistyped_option_names_the_nearest_one(capsys):
    with pytest.raises(SystemExit) as e:
        main(["fit", "specs/digits_mlp.ik", "--data", "digits", "--kernl", "ntk"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "usage: infkernel fit" in err
    assert "unrecognized arguments: --kernl ntk" in err and "did you mean --kernel?" in err


def test_more_examples_asked_than_the_dataset_has_is_said(capsys):
    assert main(["fit", "specs/digits_mlp.ik", "--data", "digits", "--n-train", "5000", "--n-test", "30",
                 "--features", "16"]) == 0
    err = capsys.readouterr().err
    assert "n_train = 5000 is more than the 1347 train examples" in err


def test_a_zero_memory_budget_says_it_must_be_positive():
    from infkernel.engine.memory import parse_memory
    with pytest.raises(SpecError, match="must be positive"):
        parse_memory("0GB")
    with pytest.raises(SpecError, match="cannot read"):
        parse_memory("lots")


def test_a_non_ascii_name_says_names_are_ascii():
    with pytest.raises(SpecError, match="ASCII") as e:
        ik.parse("input 4\nlet \u03c3 = 2\ndense w_std=\u03c3\n")
    assert "line 2" in str(e.value)


def test_inputs_beyond_float32_are_named_before_any_cast():
    """1e200 becomes inf when cast to float32: a SpecError naming the row and the
    dtype, without NumPy's overflow warning first; float64 is not refused."""
    import warnings

    from infkernel.overflow import NonFiniteKernel
    kfn = ik.compile("input 2\ndense\nrelu\ndense\n")
    x = np.array([[0.5, 0.2], [1e200, 1.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(SpecError, match=r"x1\[1\] holds 1e\+200, beyond the range of float32") as info:
            kfn(x, progress=False)
    assert not isinstance(info.value, NonFiniteKernel)
    with pytest.raises(SpecError, match=r"x2\[0\]"):
        kfn(x[:1], x[1:], progress=False)
    with pytest.raises(NonFiniteKernel):  # in range of float64, its square is not
        kfn(x, dtype="float64", progress=False)


def test_python_call_arguments_are_checked_before_any_work(tmp_path):
    kfn = ik.compile("input 2\ndense\nrelu\ndense\n")
    x = np.ones((3, 2))
    with pytest.raises(SpecError, match="get must name nngp and/or ntk"):
        kfn(x, get=None)
    with pytest.raises(SpecError, match="batch_size must be a positive integer"):
        kfn(x, batch_size=2.5)
    with pytest.raises(SpecError, match="np.savez"):
        kfn(x, out=str(tmp_path / "K.npz"))
    assert not list(tmp_path.iterdir())
    assert kfn(x, batch_size=np.int64(2), progress=False).ntk.shape == (3, 3)


def test_an_unreachable_scheduler_is_a_clear_error():
    import dask
    kfn = ik.compile("input 2\ndense\nrelu\ndense\n")
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):  # Dask's own wait (default 30 s)
        with pytest.raises(SpecError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:1"):
            kfn(np.ones((3, 2)), scheduler="tcp://127.0.0.1:1", progress=False)
