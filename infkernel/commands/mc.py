"""`infkernel mc SPEC [--x1 X.npy] --width 1024 --samples 64`: the analytic kernels
next to Monte Carlo estimates from finite networks of the same spec.

The networks run at two widths, --width and --width / 4 (twice as many networks
there, as `infkernel.testing.compare_monte_carlo` does), so that the command can
say whether the estimate has converged: how the error changes with the width,
the finite-width bias that change implies (it falls like 1/width), and whether
the difference at --width is within Monte Carlo noise plus that bias.
"""
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
    parser.add_argument("--one-width", action="store_true",
                        help="only --width: no second width, no verdict on convergence")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _load(path: str, name: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise SpecError(f"cannot read {name} from {path}: {e}") from None


# A Monte Carlo estimate whose error is this far (relative to the kernel's RMS) from the analytic
# kernel, or whose error moves this much between the two widths, is not a converged estimate.
FAR = 0.1
# A check whose tolerance (Monte Carlo noise plus the estimated bias) exceeds this cannot tell a rule error
# of that size: too noisy to vouch for the kernel.
NOISY = 0.25


def run(args) -> int:
    from ..finite import finite_shapes
    from ..montecarlo import monte_carlo
    from ..testing import compare_monte_carlo

    graph = parse(args.spec, **overrides(args))
    if args.samples < 1 or args.width < 1 or args.n < 1:
        raise SpecError("--samples, --width and --n must be positive")
    if args.samples < 2:  # the verdict compares the error with the standard error, which one network lacks
        raise SpecError("--samples 1 gives no standard error, so no verdict", hint="pass --samples 2 or more")
    fixed = finite_shapes(graph, args.width) == finite_shapes(graph, max(1, args.width // 4))  # --width unused
    if fixed and not args.one_width:
        raise SpecError(f"every dense/conv layer of {args.spec} sets its own width= (the standard parameterization "
                        f"needs them), so --width {args.width} changes nothing: the two-width verdict would compare "
                        "identical networks",
                        hint="run at the spec's widths with --one-width; to vary them, write them with a let "
                        "(dense width=w) and pass --set w=1024 --one-width")
    if args.x1 is not None:
        x1 = _load(args.x1, "--x1")
    else:
        x1 = np.random.default_rng(args.seed).normal(size=(args.n,) + graph.input_shape)
    x2 = None if args.x2 is None else _load(args.x2, "--x2")
    get = KINDS if args.get == "both" else (args.get,)
    progress = False if args.quiet else None

    start = time.perf_counter()
    two = not args.one_width and args.width >= 4
    if two:
        comparisons = {c.kind: c for c in compare_monte_carlo(
            graph, x1, x2, width=args.width, width_ratio=4, n_samples=args.samples, seed=args.seed, get=get,
            dtype=args.dtype, progress=progress)}
        kernels = {kind: (c.analytic[1], c.mean[1], c.sem[1]) for kind, c in comparisons.items()}
    else:
        analytic = compile_kernel(graph)(x1, x2, get=get, dtype="float64")
        mc = monte_carlo(graph, x1, x2, width=args.width, n_samples=args.samples, seed=args.seed, get=get,
                         dtype=args.dtype, progress=progress)
        kernels = {kind: (getattr(analytic, kind), getattr(mc.mean, kind), getattr(mc.sem, kind)) for kind in get}
    seconds = time.perf_counter() - start

    n1 = np.asarray(x1).shape[0]
    n2 = n1 if x2 is None else np.asarray(x2).shape[0]
    widths = f"widths {args.width // 4} ({2 * args.samples} networks) and {args.width}" if two else \
        f"width {args.width}"
    at = "the spec's own widths" if fixed else f"width {args.width}"
    print(f"{args.spec}: {at if fixed else widths}, {args.samples} networks at {at}, {n1} x {n2} inputs; "
          f"{seconds:.2f} s")
    pairs = [(i, j) for i in range(n1) for j in range(n2) if x2 is not None or j >= i]
    for kind in get:
        k, m, s = kernels[kind]
        scale = max(float(np.abs(k).max()), 1e-300)
        print(f"\n{kind} at {at}")
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
        if two:
            print("  " + verdict(comparisons[kind]))
    return 0


def verdict(c) -> str:
    """Whether a Monte Carlo comparison at two widths (`infkernel.testing.Comparison`) has converged,
    and whether it agrees with the analytic kernel, in one sentence."""
    (ka, kb), (ma, mb), (sa, sb) = c.analytic, c.mean, c.sem
    scale_a, scale_b = (max(float(np.sqrt(np.mean(k ** 2))), 1e-300) for k in (ka, kb))
    err_a, err_b = float(np.abs(ma - ka).max() / scale_a), float(np.abs(mb - kb).max() / scale_b)
    bias = float(np.abs(c.bias).max() / scale_b)
    (wa, wb) = c.widths
    trend = (f"error {err_a:.1%} of the kernel's RMS at width {wa}, {err_b:.1%} at width {wb}; "
             f"estimated finite-width bias at width {wb}: {bias:.1%}")
    noise = float(np.max(c.tolerance) / scale_b)
    if bias > FAR:
        within = "within" if c.ok else "beyond"
        return (f"NOT CONVERGED: {trend}, so the difference at width {wb} ({within} Monte Carlo noise plus "
                f"that bias) cannot check the analytic kernel; increase --width (heavy-tailed activations "
                f"converge slowly).")
    if not c.ok:
        return (f"DISAGREES: {trend}; the difference at width {wb} exceeds Monte Carlo noise plus the "
                f"estimated bias (familywise level 1e-3): the analytic rule may be wrong, or the estimate "
                f"converges more slowly than 1/width.")
    if noise > NOISY:
        return (f"TOO NOISY to check: {trend}; Monte Carlo noise plus that bias allow {noise:.1%} of the "
                f"kernel's RMS; increase --samples (and --width).")
    return f"agrees within {noise:.1%} of the kernel's RMS: {trend}; the difference is within Monte Carlo noise plus the estimated bias."
