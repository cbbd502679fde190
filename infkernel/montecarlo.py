"""Monte Carlo kernels: empirical NNGP and NTK averaged over finite networks.

    from infkernel.montecarlo import monte_carlo
    mc = monte_carlo("specs/fc_relu.ik", x, width=512, n_samples=64)
    mc.mean.ntk, mc.sem.ntk        # (n1, n2) mean over networks and its standard error

Each sample is one network of the spec at the given width (see
`infkernel.finite`), initialised independently; its empirical kernels are
f(x1) f(x2)^T / n_out and the NTK contracted over parameters and averaged over
output channels. As width -> infinity the mean tends to the analytic kernel,
with a bias O(1/width); the standard error of the mean shrinks like
1/sqrt(width * n_samples) (a single network's kernel fluctuates by
O(1/sqrt(width))).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from .engine import parse_memory, precision
from .errors import SpecError
from .finite import DEFAULT_MEMORY, FiniteNet, host_key, network
from .kernel import KINDS, Kernel, check_get, check_inputs


@dataclass(frozen=True)
class MonteCarlo:
    """Monte Carlo estimate of the kernels: `mean` and `sem` (standard error of
    the mean) are Kernel(nngp, ntk) of (n1, n2) float64 arrays (None for a kind
    not asked for); `samples` holds every network's kernels, (n_samples, n1, n2)."""

    mean: Kernel
    sem: Kernel
    samples: Kernel
    width: int
    n_samples: int

    @property
    def std(self) -> Kernel:
        """Standard deviation of one network's kernels."""
        return Kernel(*(None if s is None else s * np.sqrt(self.n_samples) for s in self.sem))


def _summary(samples: Kernel, width: int) -> MonteCarlo:
    n = next(s.shape[0] for s in samples if s is not None)
    mean = Kernel(*(None if s is None else s.mean(0) for s in samples))
    sem = Kernel(*(None if s is None else (s.std(0, ddof=1) / np.sqrt(n) if n > 1 else np.full(s.shape[1:], np.inf))
                   for s in samples))
    return MonteCarlo(mean, sem, samples, width, n)


def monte_carlo(spec, x1, x2=None, width: int = 256, n_samples: int = 32, seed: int = 0, get=KINDS,
                dtype: str = "float32", memory=DEFAULT_MEMORY, method: str = "structured", rng: str = "numpy",
                progress: bool | None = None, batch: int = 1, **overrides) -> MonteCarlo:
    """Empirical kernels of `n_samples` independently initialised finite
    networks of `spec`, their mean and its standard error.

    spec: spec text, a path to a .ik file, a Graph, or an
    `infkernel.finite.FiniteNet`; width: the default width of every dense/conv
    layer without a `width=` of its own; seed: sample i is initialised from
    `fold_in(key(seed), i)`, so results are reproducible and a larger
    n_samples extends a smaller one; get: "nngp", "ntk" or both; dtype:
    float32 or float64 (without changing the caller's JAX configuration);
    memory: bytes (or "512MB") of gradients alive at once in the NTK; method:
    see `FiniteNet.ntk`; rng: "numpy" draws the weights from NumPy's Philox
    generator through a JAX PRNG implementation (`host_key`), which compiles
    in a fraction of the time of JAX's threefry for a network of many
    parameter shapes; "threefry" uses JAX's default; progress: None shows a
    bar of networks done when the run takes longer than about two seconds,
    True always, False never; batch: networks initialised and evaluated in one
    jitted call (`jax.vmap` over their keys; the same networks as batch=1,
    sample i still from `fold_in(key(seed), i)`): many small networks run
    without a dispatch per network, `memory` is shared by the batch;
    overrides: `let` values of spec text."""
    if not isinstance(n_samples, int) or isinstance(n_samples, bool) or n_samples < 1:
        raise SpecError(f"n_samples must be a positive integer, got {n_samples!r}")
    if rng not in ("numpy", "threefry"):
        raise SpecError(f"rng must be numpy or threefry, got {rng!r}")
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise SpecError(f"batch must be a positive integer, got {batch!r}")
    net = spec if isinstance(spec, FiniteNet) else network(spec, width, **overrides)
    get = check_get(get)
    dims = net.graph.input_shape
    x1 = check_inputs(x1, dims, "x1")
    x2 = None if x2 is None else check_inputs(x2, dims, "x2")
    memory = parse_memory(memory)
    out = {k: [] for k in get}
    with precision(dtype) as dt:
        a = jnp.asarray(x1, dt)
        b = None if x2 is None else jnp.asarray(x2, dt)
        base = host_key(seed) if rng == "numpy" else jax.random.key(seed)
        if batch > 1:
            _batches(net, base, a, b, get, max(1, memory // batch), method, n_samples, batch, dt, out, progress)
            samples = Kernel(*(np.concatenate(out[k]) if k in out else None for k in KINDS))
            return _summary(samples, net.width)
        pending = []
        kernels = _kernel_fn(net, a.shape[0] + (0 if b is None else b.shape[0]), n_samples)
        with tqdm(total=n_samples, unit="net", desc=f"Monte Carlo, width {net.width}", leave=False,
                  delay=0.0 if progress else 2.0, disable=progress is False) as bar:
            for i in range(n_samples):
                # eager: each layer's init is compiled once per shape, shared across networks
                params = net.init(jax.random.fold_in(base, i), dt)
                pending.append(kernels(net, params, a, b, get, memory, method))
                if len(pending) > 4:  # let JAX run ahead a little, bound memory
                    _collect(pending.pop(0), out)
                    bar.update()
            for k in pending:
                _collect(k, out)
                bar.update()
    samples = Kernel(*(np.stack(out[k]) if k in out else None for k in KINDS))
    return _summary(samples, net.width)


def _kernel_fn(net: FiniteNet, n_examples: int, n_samples: int):
    """The jitted kernels. XLA's backend optimisation level 0 halves the
    compile time of the small programs a test suite compiles often, and
    doubles the run time of large ones: choose by the work of all samples
    (the NTK costs about one backward pass per example and output channel)."""
    params = jax.eval_shape(net.init, jax.random.key(0))
    work = n_samples * n_examples * net.n_out * sum(a.size for a in jax.tree.leaves(params))
    return _kernels_quick if work < 2e9 else _kernels


def _kernels(net: FiniteNet, params, x1, x2, get, memory, method):
    return net.kernels(params, x1, x2, get, memory, method)


_STATIC = ("net", "get", "memory", "method")
_kernels_quick = jax.jit(_kernels, static_argnames=_STATIC, compiler_options={"xla_backend_optimization_level": 0})
_kernels = jax.jit(_kernels, static_argnames=_STATIC)


def _batches(net, base, a, b, get, memory, method, n_samples, batch, dt, out, progress) -> None:
    """Networks `batch` at a time (the last batch padded and cut), into `out`."""
    with tqdm(total=n_samples, unit="net", desc=f"Monte Carlo, width {net.width}", leave=False,
              delay=0.0 if progress else 2.0, disable=progress is False) as bar:
        run = _batched_quick if _kernel_fn(net, a.shape[0] + (0 if b is None else b.shape[0]), n_samples) \
            is _kernels_quick else _batched
        for start in range(0, n_samples, batch):
            k = run(net, base, jnp.arange(start, start + batch), a, b, get, memory, method, jnp.dtype(dt))
            for name in out:
                out[name].append(np.asarray(getattr(k, name), np.float64)[:n_samples - start])
            bar.update(min(batch, n_samples - start))


def _batched(net: FiniteNet, base, index, x1, x2, get, memory, method, dtype):
    def one(i):
        params = net.init(jax.random.fold_in(base, i), dtype)
        return net.kernels(params, x1, x2, get, memory, method)
    return jax.vmap(one)(index)


# as for one network: quick to compile when the work of all samples is small (see `_kernel_fn`)
_batched_quick = jax.jit(_batched, static_argnames=_STATIC + ("dtype",),
                         compiler_options={"xla_backend_optimization_level": 0})
_batched = jax.jit(_batched, static_argnames=_STATIC + ("dtype",))


def _collect(k: Kernel, out: dict) -> None:
    for name in out:
        out[name].append(np.asarray(getattr(k, name), np.float64))
