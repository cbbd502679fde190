"""float32 kernels of every benchmark workload within 1e-6 of float64 (issue 12's
accuracy target, relative to the largest entry), on a few examples."""
import numpy as np
import pytest

import infkernel as ik
from infkernel import bench

N = {"fc-deep": 6, "cnn-gap": 3, "cnn-flatten": 5, "myrtle5": 2}


@pytest.mark.parametrize("name", bench.WORKLOADS)
def test_float32_is_within_1e_6_of_float64(name):
    kfn = ik.compile(bench.spec_path(name))
    x = bench.inputs(kfn.graph.input_shape, N.get(name, 2))
    ref = kfn(x, dtype="float64", progress=False)
    got = kfn(x, dtype="float32", progress=False)
    for a, b in zip(got, ref):
        assert np.abs(a.astype(np.float64) - b).max() / np.abs(b).max() < 1e-6
