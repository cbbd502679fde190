"""`infkernel mc SPEC [--x1 X.npy] --width 1024 --samples 64`: the analytic kernels
next to Monte Carlo estimates from finite networks of the same spec."""
from __future__ import annotations

import time

import numpy as np

from ..errors import SpecError
from ..kernel import KINDS, compile as compile_kernel
from ..lang import parse
from . import add_spec_arguments, overrides

MAX_ROWS = 12


def add_arguments(parser):
    add_spec_arguments(parser)
    parser.add_argument("--x1", metavar="X.npy", help="inputs (n, *input shape); default: --n Gaussian inputs")
    parser.add_argument("--x2", metavar="X.npy", help="second inputs; default: x1")
    parser.add_argument("--n", type=int, default=3, help="number of Gaussian inputs without --x1 (default 3)")
    parser.add_argument("--width", type=int, default=256, help="width of every layer without width= (default 256)")
    parser.add_argument("--samples", type=int, default=32, help="independent networks (default 32)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the networks and of the default inputs")
    parser.add_argument("--get", choices=("nngp", "ntk", "both"), default="both", help="which kernels (default both)")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                        help="precision of the finite networks (the analytic kernel is float64)")


def _load(path: str, name: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise SpecError(f"cannot read {name} from {path}: {e}") from None


def run(args) -> int:
    from ..montecarlo import monte_carlo

    graph = parse(args.spec, **overrides(args))
    if args.samples < 1 or args.width < 1 or args.n < 1:
        raise SpecError("--samples, --width and --n must be positive")
    if args.x1 is not None:
        x1 = _load(args.x1, "--x1")
    else:
        x1 = np.random.default_rng(args.seed).normal(size=(args.n,) + graph.input_shape)
    x2 = None if args.x2 is None else _load(args.x2, "--x2")
    get = KINDS if args.get == "both" else (args.get,)

    start = time.perf_counter()
    analytic = compile_kernel(graph)(x1, x2, get=get, dtype="float64")
    t_analytic = time.perf_counter() - start
    start = time.perf_counter()
    mc = monte_carlo(graph, x1, x2, width=args.width, n_samples=args.samples, seed=args.seed, get=get,
                     dtype=args.dtype)
    t_mc = time.perf_counter() - start

    n1 = x1.shape[0]
    n2 = n1 if x2 is None else np.asarray(x2).shape[0]
    print(f"{args.spec}: width {args.width}, {args.samples} networks, {n1} x {n2} inputs; "
          f"analytic {t_analytic:.2f} s, Monte Carlo {t_mc:.2f} s")
    pairs = [(i, j) for i in range(n1) for j in range(n2) if x2 is not None or j >= i]
    for kind in get:
        k, m, s = getattr(analytic, kind), getattr(mc.mean, kind), getattr(mc.sem, kind)
        scale = max(float(np.abs(k).max()), 1e-300)
        print(f"\n{kind}")
        print(f"  {'entry':>8}  {'analytic':>12}  {'MC mean':>12}  {'MC s.e.':>10}  {'rel. error':>10}  {'z':>6}")
        for i, j in pairs[:MAX_ROWS]:
            rel = abs(m[i, j] - k[i, j]) / max(abs(k[i, j]), 1e-300)
            z = (m[i, j] - k[i, j]) / s[i, j] if s[i, j] > 0 else 0.0
            print(f"  {f'{i},{j}':>8}  {k[i, j]:12.6g}  {m[i, j]:12.6g}  {s[i, j]:10.3g}  {rel:10.2%}  {z:6.2f}")
        if len(pairs) > MAX_ROWS:
            print(f"  ... {len(pairs) - MAX_ROWS} more entries")
        diff = np.abs(m - k)
        print(f"  max |MC - analytic| / max |analytic|: {diff.max() / scale:.3%}; "
              f"median s.e. / max |analytic|: {np.median(s) / scale:.3%}")
    return 0
