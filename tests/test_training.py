"""Training finite networks against their infinite-width NTK (infkernel.training, `infkernel compare`).

Data: scikit-learn's bundled 8x8 digits (flattened, standardized), 64 training
and 64 test examples, centred one-hot targets. Every run has a fixed seed;
slopes are fitted to seed-averaged measurements.

What theory predicts under the ntk parameterization at a fixed training time t:

- the parameters move by ||theta_t - theta_0|| / ||theta_0|| ~ width^-1/2
  (Jacot et al. 2018; Lee et al. 2019, Theorem 2.1 and Figure 1), so the
  network's predictions approach the NTK prediction like width^-1/2 (the
  empirical NTK at initialization fluctuates by O(width^-1/2));
- the NTK itself moves *less*: Lee et al. bound its relative change by
  O(width^-1/2), but its leading term is O(1/width) for smooth activations
  (Dyer & Gur-Ari 2020, "Asymptotics of wide networks from Feynman diagrams";
  Huang & Yau 2020, "Dynamics of deep neural networks and neural tangent
  hierarchy"): the O(width^-1/2) term of dTheta/dt is a sum over units of terms
  linear in the zero-mean readout weights. The tests check the erf network
  against -1 and the bound -1/2 against a ReLU network (whose kinks give about
  width^-3/4). No ntk net measured so far has a kernel-movement slope near -1/2
  (erf and ReLU, 1-3 hidden layers: -0.83 to -1.02; the table in README.md, section "Lazy or feature learning?").

Under muP the parameters and the kernel move by O(1) at every width (Yang &
Hu 2021); a large output scale alpha makes any parameterization lazy, with
parameter and kernel movement proportional to 1/alpha (Chizat et al. 2019).
"""
from __future__ import annotations

import os

import jax
import numpy as np
import pytest

from infkernel import datasets
from infkernel import training as T
from infkernel.errors import SpecError
from infkernel.finite import network

LINEAR = "input 64\nparameterization ntk\ndense w_std=1 b_std=0.5\n"
ERF = "input 64\nparameterization ntk\ndense w_std=1.5 b_std=0.1\nerf\ndense w_std=1\n"
RELU = "input 64\nparameterization ntk\ndense w_std=sqrt(2) b_std=0.1\nrelu\ndense w_std=1\n"
WIDTHS = (64, 256, 1024)


@pytest.fixture(scope="module")
def digits():
    return datasets.load_digits()


@pytest.fixture(scope="module")
def data(digits):
    return T.prepare(ERF, digits, n_train=64, n_test=64)


@pytest.fixture(scope="module")
def erf_reference(data):
    return T.Reference(T.model(ERF, 64, 10).graph, data)


def rms(a) -> float:
    return float(np.sqrt(np.mean(np.sum(np.asarray(a) ** 2, axis=-1))))


# --------------------------------------------------------------------------- conventions


def test_linear_model_follows_the_gradient_flow_formula(data):
    """A network linear in its parameters is its own NTK at any width: gradient descent with a
    small lr must give g_t = flow at t = lr * steps on the 1/(2n) mean loss, for every
    parameterization and alpha. The prediction at 2t (a factor 2 wrong in the convention) is far."""
    ref_ntk = T.Reference(T.model(LINEAR, 64, 10).graph, data)
    for p, lr, alpha in (("ntk", 0.05, 1.0), ("mup", 0.05, 1.0), ("ntk", 0.05, 10.0), ("standard", 0.05 / 64, 1.0)):
        m = T.model(LINEAR, 64, 10, p, alpha=alpha)
        ref = T.Reference(m.graph, data) if p == "standard" else ref_ntk
        h = T.train(m, data, 64, lr=lr, steps=200, evals=2, reference=ref)
        g_t = ref.test_mean(h.t[-1])
        wrong = rms(ref.test_mean(2 * h.t[-1]) - g_t)
        assert h.kernel_movement[-1] < 1e-5, p
        # discretization error of gradient descent is O(lr * lambda_max / n) ~ 1% at most here
        assert h.ntk_distance[-1] < 0.01 * rms(g_t), (p, alpha, h.ntk_distance)
        assert wrong > 0.3 * rms(g_t)
        assert abs(h.train_loss[-1] - h.ntk_train_loss[-1]) < 0.01 * h.train_loss[-1]
        assert h.train_loss[-1] < 0.6 * h.train_loss[0]


def test_wide_network_tracks_the_infinite_width_prediction(data, erf_reference):
    h = T.train(ERF, data, 4096, "ntk", lr=0.1, steps=100, evals=1, reference=erf_reference)
    g_t = erf_reference.test_mean(h.t[-1])
    factor_two = rms(erf_reference.test_mean(2 * h.t[-1]) - g_t)
    assert h.ntk_distance[-1] < 0.2 * factor_two, (h.ntk_distance, factor_two)
    assert abs(h.test_loss[-1] - h.ntk_test_loss[-1]) < 0.05 * h.ntk_test_loss[-1]


# --------------------------------------------------------------------------- widths


def test_ntk_parameterization_is_lazy_with_width(data, erf_reference):
    cmp = T.compare(ERF, data, WIDTHS, "ntk", seeds=(0, 1, 2), lr=0.5, steps=100, evals=1,
                    reference=erf_reference, progress=False)
    params, kernel, distance = (cmp.slope(f) for f in ("param_movement", "kernel_movement", "ntk_distance"))
    assert abs(params - (-0.5)) <= 0.2, params
    assert abs(distance - (-0.5)) <= 0.2, distance
    assert np.all(np.diff(cmp.final("ntk_distance")) < 0)
    assert kernel <= -0.5 + 0.2, kernel  # Lee et al.'s bound
    assert abs(kernel - (-1.0)) <= 0.2, kernel  # the O(1/width) law for a smooth activation
    assert cmp.final("kernel_movement")[-1] < 0.01
    assert "kernel regime" in cmp.verdict()


def test_relu_kernel_movement_falls_at_least_like_the_lee_bound(digits):
    data = T.prepare(RELU, digits, n_train=64, n_test=64)
    cmp = T.compare(RELU, data, WIDTHS, "ntk", seeds=(0, 1), lr=0.5, steps=100, evals=1, reference=False,
                    progress=False)
    assert cmp.slope("kernel_movement") <= -0.5 + 0.2
    assert abs(cmp.slope("param_movement") - (-0.5)) <= 0.2


def test_mup_kernel_movement_does_not_vanish_with_width(digits):
    data = T.prepare(RELU, digits, n_train=64, n_test=64)
    cmp = T.compare(RELU, data, WIDTHS, "mup", seeds=(0, 1), lr=0.5, steps=100, evals=1, reference=False,
                    progress=False)
    assert cmp.slope("kernel_movement") > -0.15, cmp.final("kernel_movement")
    assert abs(cmp.slope("param_movement")) < 0.15
    assert cmp.final("kernel_movement")[-1] > 0.1
    assert "feature learning" in cmp.verdict()


# --------------------------------------------------------------------------- alpha


@pytest.mark.parametrize("parameterization, lr", [("ntk", 0.5), ("mup", 0.5), ("standard", 0.005)])
def test_large_alpha_is_lazy(data, parameterization, lr):
    base = T.model(ERF, 256, 10, parameterization)
    runs = {a: T.train(base.with_alpha(a), data, 256, lr=lr, steps=100, evals=1, reference=False)
            for a in (1.0, 10.0, 100.0)}
    kernel = [runs[a].final("kernel_movement") for a in (10.0, 100.0)]
    params = [runs[a].final("param_movement") for a in (10.0, 100.0)]
    assert abs(T.slope((10, 100), kernel) - (-1.0)) <= 0.2
    assert abs(T.slope((10, 100), params) - (-1.0)) <= 0.2
    assert runs[100.0].final("kernel_movement") < 0.02 * runs[1.0].final("kernel_movement")
    assert runs[100.0].final("kernel_movement") < 0.01
    # the function still trains: alpha changes how far parameters move, not the function-space dynamics
    losses = [runs[a].final("train_loss") for a in (1.0, 10.0, 100.0)]
    assert max(losses) < 0.5 * runs[1.0].train_loss[0]


# --------------------------------------------------------------------------- pieces


def test_sgd_is_deterministic_and_trains(data, erf_reference):
    kw = dict(lr=0.2, steps=60, evals=2, batch_size=16, reference=erf_reference)
    m = T.model(ERF, 128, 10)
    a, b = T.train(m, data, 128, seed=3, **kw), T.train(m, data, 128, seed=3, **kw)
    c = T.train(m, data, 128, seed=4, **kw)
    np.testing.assert_array_equal(a.train_loss, b.train_loss)
    assert not np.array_equal(a.train_loss, c.train_loss)
    assert a.train_loss[-1] < 0.7 * a.train_loss[0]
    assert abs(a.train_loss[-1] - a.ntk_train_loss[-1]) < 0.2 * a.ntk_train_loss[-1]


def test_init_params_has_the_distribution_of_the_finite_network():
    m = T.model(RELU, 512, 10, "standard")  # the ntk parameterization is N(0, 1) throughout
    ours = T.init_params(m.net, 0)
    theirs = jax.jit(network(m.graph, 512).init)(jax.random.key(0, impl="rbg"))  # rbg: compiles faster
    assert ours.keys() == theirs.keys()
    for node in ours:
        assert ours[node].keys() == theirs[node].keys()
        for name in ours[node]:
            a, b = np.asarray(ours[node][name]), np.asarray(theirs[node][name])
            assert a.shape == b.shape and a.dtype == b.dtype
            if a.size >= 500:  # std of the std estimate below 4%
                assert abs(a.std() / b.std() - 1) < 0.15, (node, name, a.std(), b.std())
    assert T.init_params(m.net, 1)[1]["w"][0, 0] != ours[1]["w"][0, 0]


def test_mup_multiplier_and_graphs():
    m = T.model(ERF, 1024, 10, "mup", alpha=2.0)
    assert m.multiplier == pytest.approx(2.0 / 32)
    assert m.net.parameterization == "ntk" and m.n_out == 10
    s = T.model(ERF, 128, 3, "standard")
    assert s.graph.parameterization == "standard"
    assert [n.shape.channels for n in s.graph.nodes] == [64, 128, 128, 3]
    assert T.model(ERF, 128, 3).multiplier == 1.0


def test_measures():
    y = np.array([[1.0, -1.0], [0.5, 2.0], [-1.0, 0.0]])
    assert T.alignment(y @ y.T, y) == pytest.approx(1.0)
    assert T.alignment(np.eye(3), y) < 1
    assert T.relative_change([3.0, 4.0], [0.0, 5.0]) == pytest.approx(np.sqrt(10) / 5)
    assert T.slope([1, 4, 16], [8.0, 4.0, 2.0]) == pytest.approx(-0.5)
    np.testing.assert_allclose(T.targets(np.array([0, 2])), [[2 / 3, -1 / 3, -1 / 3], [-1 / 3, -1 / 3, 2 / 3]])


def test_errors(data):
    with pytest.raises(SpecError, match="unknown parameterization"):
        T.model(ERF, 64, 10, "mean_field")
    with pytest.raises(SpecError, match="alpha"):
        T.model(ERF, 64, 10, alpha=0.0)
    with pytest.raises(SpecError, match="outputs but the targets have"):
        T.model("input 64\ndense 3\n", 64, 10)
    with pytest.raises(SpecError, match="lr"):
        T.train(ERF, data, 64, lr=-1.0)


def test_divergence_is_reported(data):
    h = T.train(ERF, data, 64, "standard", lr=50.0, steps=20, evals=2, reference=False)
    assert h.diverged and np.isnan(h.train_loss[-1])


# --------------------------------------------------------------------------- command


def _compare_main(argv: list[str]) -> int:
    """The command, parsed and run as infkernel.cli does (without importing the other commands)."""
    import argparse

    from infkernel.commands import compare

    parser = argparse.ArgumentParser(prog="infkernel compare")
    compare.add_arguments(parser)
    return compare.run(parser.parse_args(argv))


def test_compare_command(tmp_path, capsys):
    spec = tmp_path / "net.ik"
    spec.write_text(ERF)
    png = tmp_path / "cmp.png"
    rc = _compare_main([str(spec), "--data", "digits", "--widths", "16,64", "--steps", "20", "--evals", "2",
                        "--n-train", "40", "--n-test", "40", "--probe", "8", "--out", str(png)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "width 16" in out and "width 64" in out and "slope" in out and "inf (NTK)" in out
    assert png.is_file() and 1000 < os.path.getsize(png) < 300_000
    with pytest.raises(SystemExit):
        _compare_main([str(spec), "--param", "nope"])
    with pytest.raises(SpecError, match="--widths"):
        _compare_main([str(spec), "--widths", "0"])
    with pytest.raises(SpecError, match="--lr"):
        _compare_main([str(spec), "--lr", "-1"])
