"""The empirical NTK computed a chunk of output channels at a time: unrolled (up to finite.UNROLL
chunks, the fast path under Monte Carlo's quick jit) and in a lax.fori_loop give the same kernel,
and the same as one chunk."""
import numpy as np
import pytest

from infkernel import finite
from infkernel.montecarlo import monte_carlo

SPEC = "input 6x6x2\nconv 3x3 same w_std=1.4 b_std=0.1\nrelu\nresidual:\n    conv 3x3 same w_std=0.5\ngap\ndense\n"


def test_chunked_ntk_same_unrolled_and_looped(monkeypatch):
    x = np.random.default_rng(0).normal(size=(3, 6, 6, 2))
    run = lambda memory: monte_carlo(SPEC, x, width=8, n_samples=2, memory=memory, dtype="float64",  # noqa: E731
                                     progress=False).mean.ntk
    whole = run(2**30)  # one chunk of all 8 output channels
    per = 6 * 6 * 8 * 8 * 3 * 6  # about one output channel's cotangents: several chunks
    unrolled = run(per)
    monkeypatch.setattr(finite, "UNROLL", 0)
    looped = run(per)
    np.testing.assert_allclose(unrolled, whole, rtol=1e-10)
    np.testing.assert_allclose(looped, whole, rtol=1e-10)
