"""Finite networks from specs: every op's forward pass against NumPy, the
initialisation conventions, widths, and the empirical kernels."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings

import infkernel as ik
from infkernel.engine import precision
from infkernel.finite import FiniteNet, empirical_kernels, finite_shapes, host_key, network
from infkernel.ops import REGISTRY
from infkernel.testing import specs

# -- every op's forward pass against its NumPy reference (`Op.examples`) --------------------------

def test_every_op_has_a_reference():
    assert not [name for name, cls in REGISTRY.items() if not cls.examples()]


# Only the parameterizations an op is defined in (attention: ntk; the builder refuses the others,
# tested in test_attention.py).
@pytest.mark.parametrize("name, parameterization",
                         [(name, p) for name in sorted(REGISTRY) for p in ("ntk", "standard")
                          if p in REGISTRY[name].parameterizations])
def test_forward_pass_matches_numpy(name, parameterization):
    for layers, dims, reference in REGISTRY[name].examples():
        text = f"input {'x'.join(map(str, dims))}\nparameterization {parameterization}\n{layers}\n"
        net = network(text, width=7)
        x = np.random.default_rng(0).normal(size=(3,) + dims)
        with precision("float64") as dt:
            params = net.init(host_key(1), dt)
            y = np.asarray(net.apply(params, jnp.asarray(x, dt)))
        assert {n.op.name for n in net.graph.nodes} >= {name}
        np.testing.assert_allclose(y, reference(x, params, parameterization == "ntk"), rtol=1e-10, atol=1e-12,
                                   err_msg=layers)
        assert y.shape[1:] == tuple(net.shapes[-1].spatial) + (net.shapes[-1].channels,)


# -- initialisation ------------------------------------------------------------------------------

@pytest.mark.parametrize("b_std", [None, 0.0, 0.7])
@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
def test_init_conventions(parameterization, b_std):
    bias = "" if b_std is None else f" b_std={b_std}"
    net = network(f"input 6x5\nparameterization {parameterization}\nconv 3 width=300 w_std=1.5{bias}\n"
                  f"dense width=400 w_std=0.8{bias}\n", width=10)
    params = net.init(host_key(0))
    conv, dense = np.asarray(params[1]["w"]), np.asarray(params[2]["w"])
    assert conv.shape == (3, 5, 300) and dense.shape == (300, 400)
    if parameterization == "ntk":  # N(0, 1); the scales are in the forward pass
        expected = (1.0, 1.0)
    else:  # N(0, w_std^2 / fan_in)
        expected = (1.5 / math.sqrt(15), 0.8 / math.sqrt(300))
    assert conv.std() == pytest.approx(expected[0], rel=0.05) and abs(conv.mean()) < 0.05 * expected[0]
    assert dense.std() == pytest.approx(expected[1], rel=0.02)
    for node in (1, 2):
        assert ("b" in params[node]) == (b_std is not None)
    if b_std is not None:
        b = np.asarray(params[2]["b"])
        assert b.shape == (400,)
        if parameterization == "standard":
            assert b.std() == pytest.approx(b_std, rel=0.15, abs=1e-12)
        else:
            assert b.std() == pytest.approx(1.0, rel=0.15)


def test_init_is_deterministic_and_per_node():
    net = network("input 3\ndense\nrelu\ndense\n", width=8)
    a, b = net.init(host_key(0)), net.init(host_key(0))
    assert jax.tree.all(jax.tree.map(lambda u, v: bool((u == v).all()), a, b))
    assert sorted(a) == [1, 3]  # parameter-free nodes are left out
    assert not np.allclose(a[1]["w"][:3, :3], a[3]["w"][:3, :3])


# -- widths ---------------------------------------------------------------------------------------

def test_default_width_and_per_layer_width():
    net = network("input 4x3\nconv 3 same\nrelu\nconv 3 width=5\nflatten\ndense\n", width=11)
    assert [s.channels for s in net.shapes] == [3, 11, 11, 5, 10, 11]
    assert [s.spatial for s in net.shapes][3:] == [(2,), (), ()]
    assert net.n_out == 11 and net.width == 11
    assert network("input 4x3\nconv 3 same\nrelu\ngap\n", width=9).n_out == 9


def test_standard_widths_come_from_the_spec():
    text = "input 3\nparameterization standard\nlet width = 6\ndense width=width\nrelu\ndense width=2*width+1\n"
    net = network(text, width=100)
    assert [s.channels for s in net.shapes] == [3, 6, 6, 13]
    assert [s.channels for s in network(ik.parse(text, width=4), 100).shapes] == [3, 4, 4, 9]


def test_a_sum_pins_a_widthless_branch_to_the_fixed_width():
    # x + conv(x) on the input: the conv takes the input's 2 channels
    net = network("input 5x2\nparallel sum:\n    branch:\n        identity\n    branch:\n        conv 3 same\n"
                  "        relu\n        conv 3 same\ngap\ndense\n", width=16)
    chans = {n.op.name + str(n.id): s.channels for n, s in zip(net.graph.nodes, net.shapes)}
    assert chans["conv2"] == 16 and chans["conv4"] == 2 and chans["sum5"] == 2
    x = np.ones((2, 5, 2))
    assert jax.jit(lambda k: net.apply(net.init(k), x))(host_key(0)).shape == (2, 16)
    # a fixed width elsewhere in the net
    net = network("input 4\ndense width=6\nparallel sum:\n    branch:\n        identity\n    branch:\n"
                  "        relu\n        dense\n", width=16)
    assert [s.channels for s in net.shapes] == [4, 6, 6, 6, 6, 6]


def test_bad_width():
    with pytest.raises(ik.SpecError, match="width"):
        network("input 3\ndense\n", width=0)
    with pytest.raises(ik.SpecError, match="width"):
        finite_shapes(ik.parse("input 3\ndense\n"), 2.5)


# -- empirical kernels -----------------------------------------------------------------------------

def _brute_force(net: FiniteNet, params, x1, x2):
    """NNGP and NTK from the full Jacobian of the batch output."""
    f1, f2 = net.flat_apply(params, x1), net.flat_apply(params, x2)
    j1 = jax.jacrev(lambda p: net.flat_apply(p, x1))(params)
    j2 = jax.jacrev(lambda p: net.flat_apply(p, x2))(params)
    ntk = sum(jnp.einsum("acp,bcp->ab", a.reshape(a.shape[:2] + (-1,)), b.reshape(b.shape[:2] + (-1,)))
              for a, b in zip(jax.tree.leaves(j1), jax.tree.leaves(j2)))
    return f1 @ f2.T / f1.shape[1], ntk / f1.shape[1]


def _all_kernels(net, params, x1, x2, methods):
    """Brute-force kernels of [x1; x2] against each method's (x1, x2) and (x1, x1) blocks."""
    nngp, ntk = _brute_force(net, params, *(2 * (jnp.concatenate([x1, x2]),)))
    n1 = x1.shape[0]
    out = {"nngp": nngp[:n1, n1:], "ntk": ntk[:n1, n1:], "self": ntk[:n1, :n1]}
    for method in methods:
        k = net.kernels(params, x1, x2, method=method)
        out[f"nngp {method}"], out[f"ntk {method}"] = k.nngp, k.ntk
        out[f"self {method}"] = net.ntk(params, x1, method=method)
    out["ntk structured, memory=1"] = net.ntk(params, x1, x2, memory=1)  # one output channel per pass
    return out


def _check_against_brute_force(net, methods):
    dims = net.graph.input_shape
    rng = np.random.default_rng(0)
    with precision("float64") as dt:
        x1 = jnp.asarray(rng.normal(size=(3,) + dims), dt)
        x2 = jnp.asarray(rng.normal(size=(2,) + dims), dt)
        params = net.init(host_key(0), dt)
        fn = jax.jit(_all_kernels, static_argnums=(0, 4), compiler_options={"xla_backend_optimization_level": 0})
        k = fn(net, params, x1, x2, methods)
    for name, value in k.items():
        np.testing.assert_allclose(value, k[name.split()[0]], rtol=1e-9, atol=1e-12, err_msg=name)
    np.testing.assert_allclose(k["self"], k["self"].T, rtol=1e-12)


@settings(max_examples=2, database=None)
@given(specs(max_layers=3, max_extra=3))
def test_structured_ntk_matches_brute_force(text):
    graph = ik.parse(text)
    _check_against_brute_force(network(ik.parse(text, width=4) if "width" in graph.lets else graph, width=5),
                               ("structured",))


def test_both_ntk_methods_and_chunking_match_brute_force():
    net = network("input 5x2\nparameterization standard\nconv 3 same width=4 w_std=1.3 b_std=0\n"
                  "layernorm\nrelu\nparallel concat:\n    branch:\n        avgpool 2 same stride=1\n"
                  "    branch:\n        dense width=3 b_std=0.2\n        gelu\nflatten\ndense width=3 b_std=0.4\n",
                  width=5)
    _check_against_brute_force(net, ("structured", "jacobian"))


def test_empirical_kernels_function_and_one_hidden_layer_by_hand():
    """f = W2 relu(W1 x / sqrt(d)) / sqrt(n) (ntk parameterization, no bias):
    NTK = relu(h1).relu(h2)/n + (x1.x2/d) sum_i relu'(h1_i) relu'(h2_i) |W2_i|^2 / (n * n_out)."""
    d, n, n_out = 3, 6, 4
    text = f"input {d}\ndense width={n}\nrelu\ndense width={n_out}\n"
    x = np.random.default_rng(0).normal(size=(2, d))
    k = empirical_kernels(text, x, seed=5, dtype="float64")
    net = network(text, 1)
    with precision("float64"):
        p = net.init(host_key(5), jnp.float64)
    w1, w2 = np.asarray(p[1]["w"]), np.asarray(p[3]["w"])
    h = x @ w1 / math.sqrt(d)
    z, dz = np.maximum(h, 0), (h > 0).astype(float)
    f = z @ w2 / math.sqrt(n)
    np.testing.assert_allclose(k.nngp, f @ f.T / n_out, rtol=1e-10)
    row = (w2 ** 2).sum(1)
    ntk = z @ z.T / n + (x @ x.T / d) * ((dz * row) @ dz.T) / (n * n_out)
    np.testing.assert_allclose(k.ntk, ntk, rtol=1e-10)
    assert not jax.config.jax_enable_x64


def test_finite_net_jits_and_vmaps():
    net = network("input 4x4x2\nconv 3x3 same\nrelu\navgpool 2x2\nflatten\ndense\n", width=6)
    params = net.init(host_key(0))
    x = jnp.ones((5, 4, 4, 2))
    y = jax.jit(net.apply)(params, x)
    assert y.shape == (5, 6)
    ys = jax.vmap(lambda key: net.apply(net.init(key), x))(jax.random.split(host_key(1), 3))
    assert ys.shape == (3, 5, 6)
    g = jax.grad(lambda p: net.apply(p, x).sum())(params)
    assert jax.tree.structure(g) == jax.tree.structure(params)


def test_ntk_tiles_examples_when_pairs_of_positions_do_not_fit():
    net = network("input 6x6x2\nconv 3x3 same w_std=1.4\nrelu\nconv 3x3 same\ngap\ndense\n", width=4)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 6, 6, 2)), jnp.float32)
    params = net.init(host_key(0))
    whole = net.ntk(params, x)
    tiled = net.ntk(params, x, memory=40_000)  # 2 examples a side: 2 x 2 tiles (each tile costs seconds)
    # the cross kernel's 3 rows: a tile of 2 and a ragged one of 1
    np.testing.assert_allclose(tiled, whole, rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(net.ntk(params, x[:3], x[3:], memory=40_000), whole[:3, 3:], rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
def test_new_layers_ntk_matches_brute_force(parameterization):
    """conv_local (weights per position: the structured NTK pairs a position with itself only),
    conv_transpose, sumpool and a product of branches, against the full Jacobian."""
    net = network(f"input 4x2\nparameterization {parameterization}\nconv_local 2 same width=3 w_std=1.3 b_std=0.2\n"
                  "relu\nconv_transpose 2 same stride=2 width=3 w_std=1.1 b_std=0\nrelu\nsumpool 2 stride=1\n"
                  "parallel prod:\n    branch:\n        conv 2 same width=3 b_std=0.1\n    branch:\n"
                  "        conv_local 1 width=3\nflatten\ndense width=2 b_std=0.1\n", width=3)
    _check_against_brute_force(net, ("structured", "jacobian"))
