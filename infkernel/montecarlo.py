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

import math
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.random import define_prng_impl

from .engine import parse_memory, precision
from .errors import SpecError
from .finite import DEFAULT_MEMORY, FiniteNet, network
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
                **overrides) -> MonteCarlo:
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
    parameter shapes; "threefry" uses JAX's default; overrides: `let` values
    of spec text."""
    if not isinstance(n_samples, int) or isinstance(n_samples, bool) or n_samples < 1:
        raise SpecError(f"n_samples must be a positive integer, got {n_samples!r}")
    if rng not in ("numpy", "threefry"):
        raise SpecError(f"rng must be numpy or threefry, got {rng!r}")
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
        pending = []
        for i in range(n_samples):
            pending.append(_sample(net, jax.random.fold_in(base, i), a, b, get, memory, method))
            if len(pending) > 4:  # let JAX run ahead a little, bound memory
                _collect(pending.pop(0), out)
        for k in pending:
            _collect(k, out)
    samples = Kernel(*(np.stack(out[k]) if k in out else None for k in KINDS))
    return _summary(samples, net.width)


# Small Monte Carlo programs are compiled far more often than they run long:
# XLA's backend optimisation level 0 halves their compile time.
@partial(jax.jit, static_argnames=("net", "get", "memory", "method"),
         compiler_options={"xla_backend_optimization_level": 0})
def _sample(net: FiniteNet, key, x1, x2, get, memory, method):
    params = net.init(key, x1.dtype)
    return net.kernels(params, x1, x2, get, memory, method)


def _collect(k: Kernel, out: dict) -> None:
    for name in out:
        out[name].append(np.asarray(getattr(k, name), np.float64))


# -- a JAX PRNG implementation drawing from NumPy's Philox ----------------------------

def _mix(a, b):
    """murmur3's 32-bit finaliser of a combined with b."""
    h = a ^ (b * jnp.uint32(0x9E3779B9))
    h = (h ^ (h >> 16)) * jnp.uint32(0x85EBCA6B)
    h = (h ^ (h >> 13)) * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


@jax.jit
def _host_seed(seed):
    s = jnp.asarray(seed).astype(jnp.uint32)
    return jnp.stack([s, _mix(s, jnp.uint32(0x632BE5AB))])


@jax.jit
def _host_fold_in(key, data):
    d = jnp.asarray(data).astype(jnp.uint32)
    return jnp.stack([_mix(key[0], d), _mix(key[1] ^ jnp.uint32(0x5851F42D), d)])


@partial(jax.jit, static_argnums=1)
def _host_split(key, shape):
    i = jnp.arange(math.prod(shape), dtype=jnp.uint32) + jnp.uint32(0x2545F491)
    keys = jnp.stack([_mix(key[0], i), _mix(key[1] ^ jnp.uint32(0x5851F42D), i)], axis=-1)
    return keys.reshape(tuple(shape) + (2,))


_UINT = {8: np.uint8, 16: np.uint16, 32: np.uint32, 64: np.uint64}


def _numpy_bits(keys, bit_width: int, shape: tuple[int, ...]):
    keys = np.asarray(keys)
    dtype = _UINT[bit_width]
    out = np.empty(keys.shape[:-1] + tuple(shape), dtype)
    for index in np.ndindex(keys.shape[:-1]):
        k = keys[index]
        generator = np.random.Generator(np.random.Philox(key=int(k[0]) << 32 | int(k[1])))
        out[index] = generator.integers(0, np.iinfo(dtype).max, size=shape, dtype=dtype, endpoint=True)
    return out


@partial(jax.jit, static_argnums=(1, 2))
def _host_bits(key, bit_width, shape):
    return jax.pure_callback(partial(_numpy_bits, bit_width=bit_width, shape=tuple(shape)),
                             jax.ShapeDtypeStruct(tuple(shape), jnp.dtype(_UINT[bit_width])), key,
                             vmap_method="expand_dims")


HOST_PRNG = define_prng_impl(key_shape=(2,), seed=_host_seed, split=_host_split, random_bits=_host_bits,
                             fold_in=_host_fold_in, name="numpy_philox", tag="np")


def host_key(seed: int):
    """A typed JAX PRNG key whose random bits come from NumPy's Philox
    (counter-based, keyed by the 64 bits of the key): for use with
    jax.random.normal, split and fold_in like any key. Split and fold_in mix
    the key words with murmur3's finaliser."""
    return jax.random.key(seed, impl=HOST_PRNG)
