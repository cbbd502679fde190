"""Non-finite kernels of finite inputs are an error naming the node where the
values first stopped being finite (issue 15, kind 4). The reference for which
node overflows: the NNGP/NTK recursion of dense + erf written out here in
float64 numpy from Williams 1997 (erf's dual) and Jacot et al. 2018, each
layer's NTK compared with the dtype's largest number."""
from __future__ import annotations

import math

import numpy as np
import pytest

import infkernel as ik
from infkernel import SpecError
from infkernel.overflow import NonFiniteKernel

W, B = 3.0, 0.1


def chaotic(depth: int) -> str:
    return f"input 2\nrepeat {depth}:\n    dense w_std={W} b_std={B}\n    erf\ndense\n"


def first_overflow(x: np.ndarray, depth: int, big: float) -> tuple[int, str]:
    """(iteration, 'dense' or 'erf') where the diagonal NTK of x first exceeds
    `big`, by the recursion in float64 logs: dense Sigma' = W^2 Sigma + B^2,
    Theta' = W^2 Theta + Sigma'; erf Sigma' = 2/pi asin(2q / (1 + 2q)),
    Theta' = Theta 4 / (pi sqrt(1 + 4q))."""
    q = float(x @ x) / x.size
    log_theta = -math.inf
    for it in range(1, depth + 1):
        q_dense = W * W * q + B * B
        log_theta = float(np.logaddexp(math.log(W * W) + log_theta, math.log(q_dense)))
        if log_theta > math.log(big):
            return it, "dense"
        log_theta += math.log(4 / (math.pi * math.sqrt(1 + 4 * q_dense)))
        q = 2 / math.pi * math.asin(2 * q_dense / (1 + 2 * q_dense))
        if log_theta > math.log(big):
            return it, "erf"
    return depth + 1, "none"


@pytest.mark.parametrize("dtype, depth", [("float32", 200), ("float64", 1000)])
def test_chaotic_erf_net_names_the_node_that_overflows(dtype, depth):
    x = np.array([[1.0, 0.5], [0.2, -1.0]])
    big = float(np.finfo(dtype).max)
    expected = min(first_overflow(row, depth, big) for row in x)
    assert expected[0] <= depth  # the reference says it overflows
    with pytest.raises(NonFiniteKernel) as info:
        ik.compile(chaotic(depth))(x, dtype=dtype, progress=False)
    err = info.value
    assert isinstance(err, SpecError) and err.node is not None
    assert err.node.op.name == expected[1], (str(err), expected)
    assert err.node.scope[0][1] + 1 == expected[0], (str(err), expected)
    assert f"repeat iteration {expected[0]}" in str(err) and "inf" in str(err)
    assert err.line == 3  # the spec line of that op
    assert "NTK" in str(err)


def test_shallow_chaotic_net_is_finite_and_untouched():
    x = np.array([[1.0, 0.5], [0.2, -1.0]])
    k = ik.compile(chaotic(20))(x, dtype="float64", progress=False)
    assert np.isfinite(k.ntk).all() and np.isfinite(k.nngp).all()


def test_cross_kernel_and_nngp_only():
    """Overflow in a cross kernel, and in the NNGP when only it is asked for:
    huge (finite) inputs overflow the input covariance itself, node 0."""
    x1 = np.array([[1.0, 2.0], [0.5, 0.5]])
    x2 = np.array([[1e200, 1e200]])
    with pytest.raises(NonFiniteKernel) as info:
        ik.compile("input 2\ndense\nrelu\ndense\n")(x1, x2, get="nngp", dtype="float64", progress=False)
    assert info.value.node.id == 0 and "NNGP" in str(info.value)
    assert info.value.pair[1] == 0
    # float32: inputs beyond its range are inf once cast, also named at the input
    with pytest.raises(NonFiniteKernel) as info:
        ik.compile("input 2\ndense\nrelu\ndense\n")(np.array([[1e30, 1.0]]), dtype="float32", progress=False)
    assert info.value.node.id == 0


def test_nan_is_named_too():
    """inf - inf in a later rule makes NaN; the first bad node is still the one that overflowed."""
    spec = "input 2\nrepeat 200:\n    dense w_std=3 b_std=0.1\n    erf\ndense\nlayernorm\ndense\n"
    x = np.array([[1.0, 0.5], [0.2, -1.0]])
    with pytest.raises(NonFiniteKernel) as info:
        ik.compile(spec)(x, dtype="float32", progress=False)
    assert info.value.node.op.name in ("dense", "erf")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_inputs_are_a_clear_error(bad):
    x = np.array([[1.0, 2.0], [3.0, bad]])
    kfn = ik.compile("input 2\ndense\nrelu\ndense\n")
    with pytest.raises(SpecError, match=r"x1 contains NaN or inf \(row 1\)"):
        kfn(x)
    with pytest.raises(SpecError, match=r"x2 contains NaN or inf \(row 1\)"):
        kfn(np.ones((1, 2)), x)


def test_first_bad_entry_finds_each_non_finite_value_and_only_those():
    """The one-pass check (the sum of each block of rows) against NumPy's
    isfinite: a NaN, +inf or -inf anywhere is found at its place, and finite
    entries whose sum overflows are not reported."""
    from infkernel.overflow import first_bad_entry
    rng = np.random.default_rng(0)
    a = rng.standard_normal((37, 11)).astype(np.float32)
    assert first_bad_entry(a, a.copy(), block=8) is None
    for value in (np.nan, np.inf, -np.inf):
        for i, j in ((0, 0), (20, 5), (36, 10)):
            b = a.copy()
            b[i, j] = value
            assert first_bad_entry(a, b, block=8) == (i, j)
            assert first_bad_entry(b, None, block=8) == (i, j)
    huge = np.full((9, 9), 3e38, np.float32)
    assert first_bad_entry(huge, -huge, block=4) is None
