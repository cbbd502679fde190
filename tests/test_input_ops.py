"""Linear ops on the input act on the examples (`compiler.on_input`): the
kernel of a spec starting with pooling equals the kernel of the same spec
without it on inputs pooled beforehand by NumPy (an independent oracle: that
path never uses the optimization), in float64, NNGP and NTK.

Broken on purpose (measured): `Avgpool.apply` summing instead of averaging
(wrong normalization) makes the avgpool cases of
test_leading_avgpool_equals_the_spec_on_prepooled_inputs and the chain test
fail (relative errors 15 to 138); `acts_on_input = False` on Avgpool (the
old path, exact but 256x the work here) makes
test_the_leading_pool_acts_on_the_examples fail."""
import numpy as np
import pytest

import infkernel as ik
from infkernel.engine.plan import node_entries
from infkernel.ops import reference

BODY = """
conv 3x3 same w_std=1.4 b_std=0.1
relu
conv 3x3 same w_std=1.4 b_std=0.1
relu
gap
dense w_std=1 b_std=0.05
"""


def kernels(spec, x, **kw):
    k = ik.compile(spec)(x, get=("nngp", "ntk"), dtype="float64", progress=False, **kw)
    return np.asarray(k.nngp), np.asarray(k.ntk)


def images(shape, n=5, seed=0):
    return np.random.default_rng(seed).normal(size=(n, *shape))


def assert_same(got, want):
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12 * np.abs(w).max())


@pytest.mark.parametrize("pool, window, stride, padding, mean", [
    ("avgpool 4x4", (4, 4), (4, 4), "valid", True),
    ("avgpool 3x3 same stride=1", (3, 3), (1, 1), "same", True),
    ("sumpool 2x3 valid stride=2x1", (2, 3), (2, 1), "valid", False),
])
def test_leading_avgpool_equals_the_spec_on_prepooled_inputs(pool, window, stride, padding, mean):
    x = images((8, 8, 2))
    pooled = reference.pool(x, window, stride, padding, mean=mean)
    h, w = pooled.shape[1:3]
    got = kernels(f"input 8x8x2\n{pool}\n{BODY}", x)
    want = kernels(f"input {h}x{w}x2\n{BODY}", pooled)
    assert_same(got, want)


def test_a_chain_of_input_ops_then_an_activation():
    """avgpool then sumpool with zero padding, both on the examples; a cross
    kernel x1 != x2."""
    x1, x2 = images((8, 8, 3), 4, 1), images((8, 8, 3), 3, 2)
    pool = lambda x: reference.pool(reference.pool(x, (2, 2), (2, 2), "valid"), (2, 2), (1, 1), "same", mean=False)
    tail = "conv 2x2 valid w_std=1.3 b_std=0\nrelu\ngap\ndense w_std=1 b_std=0"
    f = ik.compile(f"input 8x8x3\navgpool 2x2\nsumpool 2x2 same stride=1\n{tail}")
    g = ik.compile(f"input 4x4x3\n{tail}")
    run = lambda fn, a, b: fn(a, b, get=("nngp", "ntk"), dtype="float64", progress=False)
    assert_same(run(f, x1, x2), run(g, pool(x1), pool(x2)))


@pytest.mark.parametrize("op, prepare, dims", [
    ("gap", lambda x: x.mean((1, 2)), "3"),
    ("flatten", lambda x: x.reshape(len(x), -1), "48"),
])
def test_gap_and_flatten_on_the_input(op, prepare, dims):
    x = images((4, 4, 3))
    tail = "dense w_std=1.2 b_std=0.1\nrelu\ndense w_std=1 b_std=0"
    assert_same(kernels(f"input 4x4x3\n{op}\n{tail}", x), kernels(f"input {dims}\n{tail}", prepare(x)))


def test_the_leading_pool_acts_on_the_examples():
    """The 28x28 input forms no 784^2 covariance: the largest node holds the
    49^2 covariances of the pooled positions."""
    program = ik.compile("input 28x28x1\navgpool 4x4\n" + BODY).program
    assert program.raw == {0, 1} and program.formed == {1}
    assert max(node_entries(program)) == 49 ** 2
