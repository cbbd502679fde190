"""The compiled kernels against independent oracles and their contracts."""
import math

import jax
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy import integrate, special

import infkernel as ik
from infkernel import SpecError
from infkernel.compiler import Program
from infkernel.engine import precision
from infkernel.ops import DIAG, PAIRS

# Each activation written again, with its derivative, independently of the library.
PHI = {
    "relu": (ik.Relu(), lambda x: np.maximum(x, 0), lambda x: (x > 0) * 1.0),
    "erf": (ik.Erf(), special.erf, lambda x: 2 / math.sqrt(math.pi) * np.exp(-x * x)),
    "gelu": (ik.Gelu(), lambda x: x * special.ndtr(x), lambda x: special.ndtr(x) + x * np.exp(-x * x / 2) / math.sqrt(2 * math.pi)),
    "leaky_relu": (ik.LeakyRelu(alpha=0.2), lambda x: np.where(x >= 0, x, 0.2 * x), lambda x: np.where(x >= 0, 1, 0.2)),
    "abrelu": (ik.Abrelu(a=-0.5, b=1.3), lambda x: np.where(x >= 0, 1.3 * x, -0.5 * x), lambda x: np.where(x >= 0, 1.3, -0.5)),
    "sin": (ik.Sin(a=1.2, b=0.7, c=0.4), lambda x: 1.2 * np.sin(0.7 * x + 0.4), lambda x: 0.84 * np.cos(0.7 * x + 0.4)),
}
COVARIANCES = [(1.0, 0.3, 0.8), (2.0, -1.1, 1.5), (0.5, 0.45, 0.5)]


def gaussian_expectation(f, v1, c, v2):
    """E[f(u, v)] for (u, v) ~ N(0, [[v1, c], [c, v2]]) by nested adaptive
    quadrature over u = l11 z1, v = l21 z1 + l22 z2, with breakpoints where u
    or v crosses 0 (the kinks and jumps of relu-type functions)."""
    l11 = math.sqrt(v1)
    l21 = c / l11
    l22 = math.sqrt(max(v2 - l21 * l21, 0.0))
    gauss = lambda z: math.exp(-z * z / 2) / math.sqrt(2 * math.pi)

    def inner(z1):
        g = lambda z2: f(l11 * z1, l21 * z1 + l22 * z2) * gauss(z2)
        kink = min(max(-l21 * z1 / l22, -9.0), 9.0)
        return integrate.quad(g, -9, 9, points=[kink], epsabs=1e-12, limit=200)[0] * gauss(z1)

    return integrate.quad(inner, -9, 9, points=[0.0], epsabs=1e-11, limit=200)[0]


@pytest.mark.parametrize("name", sorted(PHI))
@pytest.mark.parametrize("cov", COVARIANCES)
def test_dual_kernels_match_numerical_integration(name, cov):
    op, phi, dphi = PHI[name]
    v1, c, v2 = cov
    with precision("float64"):
        k, kdot = op.dual(np.float64(c), np.float64(v1), np.float64(v2), True)
    expected_k = gaussian_expectation(lambda u, v: phi(u) * phi(v), v1, c, v2)
    expected_kdot = gaussian_expectation(lambda u, v: dphi(u) * dphi(v), v1, c, v2)
    assert float(k) == pytest.approx(expected_k, rel=1e-7, abs=1e-10)
    assert float(kdot) == pytest.approx(expected_kdot, rel=1e-7, abs=1e-10)


# -- random specs: symmetric and positive semi-definite ---------------------------

LAYERS = ["relu", "erf", "gelu", "leaky_relu alpha=0.1", "abrelu a=-0.3 b=1", "sin a=1 b=1 c=0.2", "identity"]


@st.composite
def conv_specs(draw):
    lines = ["input 5x4x2", f"parameterization {draw(st.sampled_from(['ntk', 'standard']))}"]
    width = " width=8" if "standard" in lines[1] else ""
    for _ in range(draw(st.integers(1, 3))):
        lines.append(f"conv {draw(st.sampled_from(['3x3 same', '2x2 circular', '1x1']))} "
                     f"w_std={draw(st.floats(0.5, 2))} b_std={draw(st.floats(0, 0.5))}{width}")
        if draw(st.booleans()):
            lines.append("layernorm")
        lines.append(draw(st.sampled_from(LAYERS)))
    lines.append(draw(st.sampled_from(["gap", "flatten", "avgpool 2x2 same\nflatten"])))
    lines.append(f"dense w_std=1{width}")
    return "\n".join(lines) + "\n"


@settings(max_examples=8)
@given(conv_specs(), st.integers(0, 2**31))
def test_random_kernels_are_symmetric_and_psd(spec, seed):
    x = np.random.default_rng(seed).standard_normal((7, 5, 4, 2))
    k = ik.compile(spec)(x, dtype="float64", progress=False)
    for m in (k.nngp, k.ntk):
        assert np.allclose(m, m.T, rtol=1e-12, atol=0)
        eig = np.linalg.eigvalsh(m)
        assert eig[0] >= -1e-9 * eig[-1]


def test_cross_kernel_agrees_with_symmetric_blocks():
    x = np.random.default_rng(1).standard_normal((6, 6, 6, 2))
    kfn = ik.compile("input 6x6x2\nconv 3x3 same w_std=1.4\nrelu\ngap\ndense\n")
    full = kfn(x, dtype="float64", progress=False)
    cross = kfn(x[:2], x[2:], dtype="float64", progress=False)
    np.testing.assert_allclose(cross.ntk, full.ntk[:2, 2:], rtol=1e-12)


# -- numerics ------------------------------------------------------------------------

@pytest.mark.parametrize("spec", [
    "input 5\ndense w_std=1.5\nrelu\ndense\n",
    "input 5\ndense w_std=1.5\nlayernorm\nerf\ndense\n",
    "input 4x4x2\nconv 3x3 same\ngelu\ngap\ndense\n",
])
def test_zero_input_gives_a_finite_kernel(spec):
    x = np.random.default_rng(0).standard_normal((3, *ik.parse(spec).input_shape))
    x[1] = 0
    k = ik.compile(spec)(x, progress=False)
    assert np.isfinite(k.nngp).all() and np.isfinite(k.ntk).all()


def test_nan_and_shape_mismatch_are_clear_errors():
    kfn = ik.compile("input 4x4x2\nconv 3x3 same\nrelu\nflatten\ndense\n")
    x = np.ones((3, 4, 4, 2))
    x[2, 1, 1, 0] = np.nan
    with pytest.raises(SpecError, match=r"x1 contains NaN or inf \(row 2\)"):
        kfn(x)
    with pytest.raises(SpecError, match=r"x2 has shape \(3, 4, 4\), but the spec's input is 4x4x2"):
        kfn(np.ones((3, 4, 4, 2)), np.ones((3, 4, 4)))
    with pytest.raises(SpecError, match="get must name"):
        kfn(np.ones((3, 4, 4, 2)), get="ntgk")
    with pytest.raises(SpecError, match="still has spatial axes"):
        ik.compile("input 4x4x2\nconv 3x3\n")


def test_arccos_arguments_are_clipped():
    # Identical inputs make the correlation 1 up to rounding; arccos must not see 1 + eps.
    x = np.full((2, 3), 0.1)
    k = ik.compile("input 3\nrepeat 6:\n    dense w_std=1.7\n    relu\ndense\n")(x, progress=False)
    assert np.isfinite(k.ntk).all()
    np.testing.assert_allclose(k.ntk, k.ntk[0, 0], rtol=1e-5)


def test_asking_for_nngp_only_skips_the_ntk(monkeypatch):
    asked = []
    original = ik.Relu.dual
    monkeypatch.setattr(ik.Relu, "dual", lambda self, c, v1, v2, need_dot: asked.append(need_dot) or original(self, c, v1, v2, need_dot))
    kfn = ik.compile("input 3\ndense\nrelu\ndense\n")
    k = kfn(np.ones((2, 3)), get="nngp", progress=False)
    assert k.ntk is None and asked and not any(asked)


def test_compiled_function_is_traced_once_per_shape():
    kfn = ik.compile("input 3\ndense\nrelu\ndense\n")
    rng = np.random.default_rng(0)
    for _ in range(3):
        kfn(rng.standard_normal((5, 3)), progress=False)
    assert kfn.engine.cross_fn._cache_size() == 1


def jaxpr_size(depth: int) -> int:
    program = Program(ik.parse(f"input 8\nrepeat {depth}:\n    dense w_std=1.4 b_std=0.1\n    relu\ndense\n"))
    x = np.ones((2, 8), np.float32)
    variances = jax.eval_shape(program.self_pass, x)
    zeros = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), variances)
    return len(str(jax.make_jaxpr(lambda a: program.cross_pass(a, a, zeros, zeros, True))(x)))


def test_repeat_lowers_to_a_scan_that_does_not_grow_with_depth():
    assert abs(jaxpr_size(100) - jaxpr_size(10)) <= 8  # only the scan length differs


@pytest.mark.parametrize("depth", [4])  # a scan of 3 iterations: one double step and one single
def test_two_iterations_per_loop_step_give_the_same_kernel(depth, monkeypatch):
    """Scans with a large carry run two iterations per loop step (compiler.UNROLL_BYTES):
    forced on every scan, the kernels of dense and conv repeats equal the one-step scan's."""
    from infkernel import compiler
    specs = [f"input 3\nrepeat {depth}:\n    dense w_std=1.4 b_std=0.1\n    relu\ndense\n",
             f"input 4x4x2\nrepeat {depth}:\n    conv 3x3 same w_std=1.4\n    erf\ngap\ndense\n"]
    for spec in specs:
        x = np.random.default_rng(depth).standard_normal((5,) + ik.parse(spec).input_shape)
        monkeypatch.setattr(compiler, "UNROLL_BYTES", 1 << 60)
        one = ik.compile(spec)(x, dtype="float64", progress=False)
        monkeypatch.setattr(compiler, "UNROLL_BYTES", 0)
        two = ik.compile(spec)(x, dtype="float64", progress=False)
        for kind in ("nngp", "ntk"):
            np.testing.assert_allclose(getattr(two, kind), getattr(one, kind), rtol=1e-12, atol=0)


def test_first_iteration_with_other_fan_in_is_peeled_not_unrolled_all():
    spec = "input 3x3x2\nparameterization standard\nrepeat 5:\n    conv 3x3 same width=4\n    relu\nflatten\ndense width=1\n"
    program = Program(ik.parse(spec))
    scans = [s for s in program.steps if not isinstance(s, int)]
    assert len(scans) == 1 and scans[0].length == 4


def test_layouts_follow_the_readout():
    vanilla = Program(ik.parse(open("specs/cntk_vanilla.ik").read(), depth=2))
    assert {vanilla.layout[n.id] for n in vanilla.graph.nodes if n.shape.rank} == {DIAG}
    pooled = Program(ik.parse(open("specs/myrtle5.ik").read()))
    ops = [(n.op.name, pooled.layout[n.id]) for n in pooled.graph.nodes if n.shape.rank]
    assert all(layout == PAIRS for name, layout in ops[:-1])
    assert ops[-1] == ("avgpool", DIAG)  # read out by flatten: same positions suffice


def test_one_input_rule_reshapes_examples_of_the_same_size():
    """(n, 8, 8, 1) digits for `input 64`, and flat rows for `input 8x8x1`: reshaped in C order, the
    same rule as `fit` and the scikit-learn estimators; a different per-example size is an error."""
    from infkernel.datasets import load_digits, reshape_for

    x = load_digits().x_train[:4]  # (4, 8, 8, 1)
    flat = ik.compile("specs/digits_mlp.ik")
    k = flat(x, dtype="float64")
    np.testing.assert_array_equal(k.ntk, flat(x.reshape(4, 64), dtype="float64").ntk)
    image = ik.compile("input 8x8x1\nconv 3x3 same w_std=1.4\nrelu\nflatten\ndense\n")
    np.testing.assert_array_equal(image(x.reshape(4, 64), x[:2].reshape(2, 8, 8), dtype="float64").ntk,
                                  image(x, x[:2], dtype="float64").ntk)
    np.testing.assert_array_equal(reshape_for(x, (64,)), x.reshape(4, 64))
    with pytest.raises(SpecError, match=r"x1 has shape \(4, 8, 8, 1\), but the spec's input is 63"):
        ik.compile("input 63\ndense\n")(x)
    with pytest.raises(SpecError, match="the data has shape"):
        reshape_for(x, (63,))
