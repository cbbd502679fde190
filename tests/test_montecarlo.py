"""Monte Carlo property tests of every kernel rule: analytic NNGP and NTK against
finite networks of the same spec, and the 1/sqrt(width) convergence of one network."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings

import infkernel as ik
from infkernel.cli import main
from infkernel.montecarlo import MonteCarlo, host_key, monte_carlo  # host_key: re-exported
from infkernel.ops import REGISTRY
from infkernel.testing import assert_matches_monte_carlo, spec_and_inputs, specs

# Widths and samples of the drawn-spec test: cheap, and enough for errors of a rule (which do not
# shrink with the width) of ~25% of the kernel to fail. The sharp checks of every rule (5 %) are in
# test_mc_rules.py.
WIDTH, SAMPLES = 64, 96


def test_every_drawn_op_draws_itself():
    """Each op drawn in random specs overrides the base class's strategy or is a plain keyword."""
    for name, cls in REGISTRY.items():
        if cls.drawn and cls.arity != 1:
            assert cls.draw.__func__ is not ik.ops.Op.draw.__func__, name


@settings(max_examples=1, database=None)
@given(spec_and_inputs(max_layers=3, max_extra=3, n1=(1, 2)))
def test_random_specs_match_monte_carlo(case):
    spec, x1, x2 = case
    assert_matches_monte_carlo(spec, x1, x2, width=WIDTH, n_samples=SAMPLES)


@settings(max_examples=60, database=None)
@given(specs(max_layers=4, max_extra=4))
def test_drawn_specs_are_valid_and_build_finite_networks(text):
    from infkernel.finite import network
    graph = ik.parse(text)
    assert graph.output.shape.rank == 0
    net = network(graph, width=8)
    assert all(s.channels >= 1 for s in net.shapes)


# -- convergence of one network: error ~ width^(-1/2) -------------------------------------

RELU = """input 6
parameterization ntk
dense w_std=sqrt(2) b_std=0.1
relu
dense w_std=sqrt(2) b_std=0.1
relu
dense w_std=1
"""
CONV = """input 5x2
parameterization ntk
conv 3 same w_std=sqrt(2) b_std=0.1
relu
conv 3 same w_std=sqrt(2)
relu
gap
dense w_std=1
"""


@pytest.mark.parametrize("spec,widths", [(RELU, (32, 90, 256)), (CONV, (16, 45, 128))], ids=["relu", "conv"])
def test_single_network_error_falls_like_inverse_sqrt_width(spec, widths):
    """RMS over networks of ||K_w - K_inf||_F / ||K_inf||_F against the width:
    a log-log slope of -1/2 (the fluctuations of one network's kernel are
    O(1/sqrt(width)); its O(1/width) bias is smaller at these widths). The
    narrow networks are cheap: more of them there."""
    x = np.random.default_rng(1).normal(size=(4,) + ik.parse(spec).input_shape)
    exact = ik.compile(spec)(x, dtype="float64")
    errors = {"nngp": [], "ntk": []}
    for w, n_samples in zip(widths, (160, 96, 64)):
        mc = monte_carlo(spec, x, width=w, n_samples=n_samples, seed=w)
        for kind, err in errors.items():
            k = getattr(exact, kind)
            d2 = ((getattr(mc.samples, kind) - k) ** 2).sum(axis=(1, 2)) / (k ** 2).sum()
            err.append(np.sqrt(d2.mean()))
    for kind, err in errors.items():
        assert np.all(np.diff(err) < 0), (kind, err)
        slope = np.polyfit(np.log(widths), np.log(err), 1)[0]
        assert abs(slope + 0.5) <= 0.15, f"{kind}: slope {slope:.3f}, errors {err}"


# -- monte_carlo itself ------------------------------------------------------------------

def test_monte_carlo_result_and_reproducibility():
    x1 = np.random.default_rng(0).normal(size=(3, 5))
    x2 = np.random.default_rng(1).normal(size=(2, 5))
    spec = "input 5\ndense w_std=1.5 b_std=0.2\nerf\ndense\n"
    mc = monte_carlo(spec, x1, x2, width=32, n_samples=6, seed=3)
    assert isinstance(mc, MonteCarlo) and mc.n_samples == 6 and mc.width == 32
    assert mc.mean.nngp.shape == mc.sem.ntk.shape == (3, 2) and mc.samples.ntk.shape == (6, 3, 2)
    np.testing.assert_allclose(mc.mean.ntk, mc.samples.ntk.mean(0))
    np.testing.assert_allclose(mc.sem.nngp, mc.samples.nngp.std(0, ddof=1) / np.sqrt(6))
    more = monte_carlo(spec, x1, x2, width=32, n_samples=8, seed=3)
    np.testing.assert_allclose(more.samples.nngp[:6], mc.samples.nngp, rtol=1e-6)  # a prefix
    other = monte_carlo(spec, x1, x2, width=32, n_samples=6, seed=4)
    assert not np.allclose(other.samples.nngp, mc.samples.nngp)
    only = monte_carlo(spec, x1, width=32, n_samples=2, get="nngp")
    assert only.mean.ntk is None and only.mean.nngp.shape == (3, 3)
    np.testing.assert_allclose(only.samples.nngp, np.swapaxes(only.samples.nngp, 1, 2), rtol=1e-6)


def test_batched_networks_are_the_same_networks():
    """batch=k runs k networks per jitted call (vmap over their keys): the same samples as one at a time,
    NNGP and NTK (dense, conv and the jacobian fallback of attention), a last batch cut to n_samples."""
    x = np.random.default_rng(0).normal(size=(2, 3, 2))
    spec = "input 3x2\nconv 2 same w_std=1.3 b_std=0.1\nrelu\nattention\ngap\ndense\n"
    one = monte_carlo(spec, x, width=8, n_samples=5, seed=2, progress=False)
    many = monte_carlo(spec, x, width=8, n_samples=5, seed=2, progress=False, batch=2)
    assert many.samples.ntk.shape == (5, 2, 2)
    np.testing.assert_allclose(many.samples.nngp, one.samples.nngp, rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(many.samples.ntk, one.samples.ntk, rtol=2e-5, atol=1e-6)
    with pytest.raises(ik.SpecError, match="batch"):
        monte_carlo(spec, x, width=8, n_samples=2, batch=0)


def test_monte_carlo_threefry_and_float64_agree_in_distribution():
    import jax
    x = np.random.default_rng(0).normal(size=(2, 3))
    spec = "input 3\ndense w_std=1.3\nrelu\ndense\n"
    a = monte_carlo(spec, x, width=64, n_samples=24, rng="threefry", dtype="float64")
    b = monte_carlo(spec, x, width=64, n_samples=24)
    assert a.mean.ntk.dtype == np.float64
    z = np.abs(a.mean.ntk - b.mean.ntk) / np.sqrt(a.sem.ntk ** 2 + b.sem.ntk ** 2)
    assert z.max() < 5
    assert not jax.config.jax_enable_x64  # float64 did not leak


def test_host_key_draws_standard_normals():
    import jax
    key = host_key(7)
    a = np.asarray(jax.random.normal(key, (20000,)))
    assert abs(a.mean()) < 0.03 and abs(a.std() - 1) < 0.03
    k1, k2 = jax.random.split(key)
    b, c = (np.asarray(jax.random.normal(k, (1000,))) for k in (k1, k2))
    assert abs(np.corrcoef(b, c)[0, 1]) < 0.15
    np.testing.assert_array_equal(np.asarray(jax.random.normal(host_key(7), (5,))), a[:5])


def test_monte_carlo_errors():
    x = np.zeros((2, 3))
    with pytest.raises(ik.SpecError, match="n_samples"):
        monte_carlo("input 3\ndense\n", x, n_samples=0)
    with pytest.raises(ik.SpecError, match="x1 has shape"):
        monte_carlo("input 4\ndense\n", x)
    with pytest.raises(ik.SpecError, match="width"):
        monte_carlo("input 3\ndense\n", x, width=0)


# -- the CLI -----------------------------------------------------------------------------------

def test_cli_mc(tmp_path, capsys):
    spec = tmp_path / "net.ik"
    spec.write_text("input 4\nparameterization ntk\nlet s = 1.4\ndense w_std=s b_std=0.1\nrelu\ndense\n")
    x = np.random.default_rng(0).normal(size=(2, 4))
    np.save(tmp_path / "x.npy", x)
    assert main(["mc", str(spec), "--x1", str(tmp_path / "x.npy"), "--width", "32", "--samples", "4"]) == 0
    out = capsys.readouterr().out
    assert "nngp" in out and "ntk" in out and "analytic" in out and "rel. error" in out
    exact = ik.compile(str(spec))(x, dtype="float64")
    assert f"{exact.ntk[0, 1]:12.6g}".strip() in out
    assert main(["mc", str(spec), "--width", "16", "--samples", "2", "--get", "nngp", "--set", "s=2"]) == 0
    out = capsys.readouterr().out
    assert "nngp" in out and "\nntk" not in out
    assert main(["mc", str(spec), "--x1", str(tmp_path / "missing.npy")]) == 2
    np.save(tmp_path / "bad.npy", np.zeros((2, 5)))
    assert main(["mc", str(spec), "--x1", str(tmp_path / "bad.npy")]) == 2
    assert "x1 has shape" in capsys.readouterr().err


# -- specs whose analytic kernel would not be the limit of their finite networks ----------------
# Found by Monte Carlo; the graph builder now rejects the first two, and concat
# weighs width-less branches by their multiple of the width.

REJECTED = {
    "activation of a non-Gaussian input": ("input 3\ndense\nrelu\nerf\ndense\n", "Gaussian pre-activations"),
    "sum of two correlated branches": ("input 3\ndense\nparallel sum:\n    branch:\n        identity\n"
                                       "    branch:\n        identity\ndense\n", "same dense or conv layer"),
}


@pytest.mark.parametrize("name", sorted(REJECTED))
def test_specs_without_an_exact_rule_are_rejected(name):
    spec, message = REJECTED[name]
    with pytest.raises(ik.SpecError, match=message):
        ik.parse(spec)


def test_concat_weighs_widthless_branches_by_their_channels():
    spec = "input 4x4x2\ndense\nparallel concat:\n    branch:\n        flatten\n    branch:\n        gap\ndense\n"
    x = np.random.default_rng(0).normal(size=(3,) + ik.parse(spec).input_shape)
    assert_matches_monte_carlo(spec, x, width=32, n_samples=16)
