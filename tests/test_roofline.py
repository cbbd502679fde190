"""The roofline counts of `infkernel bench` (plumbing and counting rules, not speed)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import infkernel as ik
from infkernel import bench, roofline


def _flops(fn, *args):
    return roofline.jaxpr_flops(jax.make_jaxpr(fn)(*args).jaxpr)


def test_elementwise_ops_count_one_per_output_entry_and_moves_count_zero():
    x = jnp.ones((3, 4))
    assert _flops(lambda a: a * 2 + 1, x)["flops"] == 24
    assert _flops(lambda a: jnp.pad(a, 1).reshape(-1)[:5], x)["flops"] == 0
    counted = _flops(lambda a: jnp.sqrt(a) + 1, x)
    assert counted == {"flops": 24, "transcendentals": 12}


def test_matmul_counts_2mnk_and_reductions_their_input():
    assert _flops(jnp.matmul, jnp.ones((2, 3)), jnp.ones((3, 5)))["flops"] == 2 * 2 * 3 * 5
    assert _flops(lambda a: a.sum(axis=1), jnp.ones((4, 6)))["flops"] == 24


def test_a_scan_counts_its_body_times_its_length():
    def f(x):
        return lax.scan(lambda c, _: (c * 3.0, None), x, None, length=7)[0]
    assert _flops(f, jnp.ones((5,)))["flops"] == 7 * 5


def test_program_flops_grow_linearly_with_the_depth_of_a_repeat():
    spec = "input 6x6x2\nlet depth = 2\nrepeat depth:\n    conv 3x3 same b_std=0\n    relu\nflatten\ndense"
    f = [roofline.program_flops(ik.compile(spec, depth=d).program)["flops"] for d in (2, 3, 5)]
    step = f[1] - f[0]
    assert step > 0 and f[2] - f[1] == 2 * step  # the scan's length multiplies its body


def test_program_flops_agree_with_xla_cost_analysis_on_a_program_without_loops():
    # An independent count: XLA's HloCostAnalysis of the compiled cross pass of one
    # pair (trustworthy here; it counts a while body once, hence no repeat).
    spec = "input 8x8x3\nconv 3x3 same w_std=1.4 b_std=0\nrelu\nconv 3x3 same\nrelu\navgpool 2x2\nflatten\ndense"
    program = ik.compile(spec).program
    ours = roofline.program_flops(program)["flops"]
    args = roofline._one_pair_args(program, jnp.float32)
    fn = jax.jit(lambda x1, x2, v1, v2: program.cross_pass(x1, x2, v1, v2, True))
    cost = fn.lower(*args).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    assert ours == pytest.approx(cost["flops"], rel=0.1)


def test_program_bytes_read_and_write_every_covariance_array_once():
    # nodes: input, conv, relu, flatten, dense; 16 positions.
    same = ik.compile("input 4x4x3\nconv 3x3 same\nrelu\nflatten\ndense").program
    # both kernels (2 arrays) of 4 bytes: input writes 16, conv and relu read and
    # write 16, flatten reads 16 and writes 1, dense reads and writes 1 entry.
    assert roofline.program_bytes(same) == 2 * 4 * (16 + 32 + 32 + 17 + 2)
    assert roofline.program_bytes(same, need_ntk=False, itemsize=8) == 8 * (16 + 32 + 32 + 17 + 2)
    # Global average pooling needs pairs of positions: 16^2 entries up to gap.
    pooled = ik.compile("input 4x4x3\nconv 3x3 same\nrelu\ngap\ndense").program
    assert roofline.program_bytes(pooled) == 2 * 4 * (256 + 512 + 512 + 257 + 2)


def test_peaks_are_positive_rates():
    p = roofline.peaks(repeats=1, matmul_size=64, stream_elements=2**12)
    assert p["matmul_gflops"] > 0 and p["stream_gbs"] > 0 and p["stream_mib"] == 2**14 / 2**20


def test_roofline_columns_compare_with_the_peaks():
    r = bench.Result("infkernel", "fc-deep", 8, seconds=1.0, compile_seconds=0.0, peak_mb=1.0,
                     flops=10e9, bytes=1e9)
    peaks = {"matmul_gflops": 100.0, "stream_gbs": 20.0}
    cols = bench.roofline_columns(r, peaks).split()
    # 10 GFLOP/s = 10% of the matmul peak; 1 GB/s = 5%; bound max(0.1 s, 0.05 s): 10x.
    assert cols[1:] == ["10.00", "10.0%", "1.00", "5.0%", "10.0x"]
    assert "10.00" in bench.row(r, peaks=peaks)


def test_worker_reports_the_work_of_the_whole_kernel():
    result = bench.run_infkernel("cnn-flatten", 3, repeats=1)
    program = ik.compile(bench.spec_path("cnn-flatten")).program
    pairs = 3 * 4 // 2
    assert result.flops == pairs * roofline.program_flops(program)["flops"]
    assert result.bytes == pairs * roofline.program_bytes(program)
    assert result.cpu_seconds > 0 and np.isfinite(result.gflops)


def test_program_bytes_of_a_leading_pool_count_pooled_covariances():
    """avgpool 4x4 of 28x28 images acts on the images (compiler.on_input): the bytes are those of
    the same network on 7x7 inputs, plus the pooling of the two examples' values (2 x 784 read,
    2 x 49 written), not the 784^2 covariance of the unpooled input."""
    body = "conv 3x3 same\nrelu\ngap\ndense"
    pooled = ik.compile(f"input 28x28x1\navgpool 4x4\n{body}").program
    small = ik.compile(f"input 7x7x1\n{body}").program
    want = roofline.program_bytes(small) + 4 * (2 * 784 + 2 * 49)
    assert roofline.program_bytes(pooled) == want
