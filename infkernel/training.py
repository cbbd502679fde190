"""Lazy versus feature learning: train finite networks built from a spec and measure how far they leave their kernel.

The infinite-width NTK is a baseline and a falsifier: a phenomenon that a
trained network shows and that survives with frozen features (kernel gradient
descent with the NTK) needs no feature learning. This module trains finite
networks of a spec at several widths and measures, along training, how far
each one moves from its kernel at initialization and from the infinite-width
NTK prediction at the same time::

    import infkernel as ik
    from infkernel import training
    data = training.prepare("specs/digits_mlp.ik", ik.datasets.load_digits(), n_train=200, n_test=200)
    run = training.train("specs/digits_mlp.ik", data, width=1024, parameterization="ntk", lr=0.5, steps=400)
    run.kernel_movement[-1], run.ntk_distance[-1]
    cmp = training.compare("specs/digits_mlp.ik", data, widths=(64, 256, 1024))
    cmp.slope("param_movement")             # about -1/2 under ntk, about 0 under mup
    cmp.slope("kernel_movement")            # -1/2 or steeper under ntk, about 0 under mup

The model (Chizat, Oyallon & Bach 2019, "On Lazy Training in Differentiable
Programming", Sec. 2): with f(x; theta) the finite network,

    g(x; theta) = m * (f(x; theta) - f(x; theta_0))        (center=True; m * f(x; theta) otherwise)
    L(theta)    = 1/m^2 * 1/(2n) sum_i ||g(x_i; theta) - y_i||^2

with m = alpha * s: `alpha` the output scale of Chizat et al. and s the output
multiplier of the parameterization (s = 1 except under mup). Gradient descent
with learning rate lr on L moves the outputs by

    g <- g - lr/n * Theta (g - y) + O(lr^2),   Theta = J_f J_f^T (per output channel)

whatever m is, so alpha only changes how far the parameters must move: by
1/alpha. Large alpha is lazy for every parameterization.

Time. Step k of gradient descent with learning rate lr is time t = lr * k of
the gradient flow d theta/dt = -grad L. On the training set the
infinite-width network then follows (Lee et al. 2019, "Wide neural networks of
any depth evolve as linear models under gradient descent", Eq. (9)-(10) and
Figure 2, here with the 1/(2n) mean loss; n the number of training examples)

    g_t(X) = Y + exp(-Theta t / n) (g_0(X) - Y),
    g_t(x) = g_0(x) + Theta(x, X) Theta^{-1} (I - exp(-Theta t / n)) (Y - g_0(X)),

which is `infkernel.predict.GradientFlow` (loss 1/2 sum, learning rate 1) at
time t / n. g_0 is the model's own output at initialization: zero when
centred, so the reference is then the ensemble mean. SGD with batches of B
examples uses the batch mean, so its expected step is the same and t = lr * k
still.

Parameterizations. Every one is implemented on the network of the ntk
parameterization (weights N(0, 1), a layer computes w_std/sqrt(fan_in) x W + b_std b),
through the abc-symmetry of Yang & Hu 2021 ("Tensor Programs IV: Feature
Learning in Infinite-Width Neural Networks", Sec. 3, their abc-parametrization
W^l = n^{-a_l} w^l, w^l ~ N(0, n^{-2 b_l}), learning rate lr n^{-c}; the
dynamics of SGD are unchanged by a_l += theta, b_l -= theta, c_l -= 2 theta,
per layer):

- ``ntk``: NTP, a_l = 1/2 (a_1 = 0: the input fan-in is fixed), b_l = 0, c = 0.
  The network of the spec, learning rate lr, s = 1.
- ``standard``: SP (Sohl-Dickstein et al. 2020), a_l = 0, b_1 = 0,
  b_l = 1/2, c = 0: weights N(0, w_std^2/fan_in), learning rate lr for every
  layer. Its NTK grows with the width, so the infinite-width reference is the
  standard-parameterization NTK *at that width* (as in Lee et al. 2019); a
  fixed lr diverges once the width is large enough.
- ``mup``: muP (maximal update; Yang & Hu 2021, the muP column of their
  table of abc-parametrizations, Table 3 as the issue cites it):
  a_1 = -1/2, a_l = 0 for the hidden layers, a_{L+1} = 1/2; b_l = 1/2 for
  all l; c = 0. Moved by the symmetry to b_l = 0 (N(0, 1) weights) this is
  exactly: the ntk network, its output multiplied by an extra n^{-1/2}
  (a_{L+1} + b_{L+1} = 1 instead of 1/2), and every learning rate (input,
  hidden, output layer and biases) multiplied by n. n is the network's
  default width (that of every width-less dense/conv layer), measured in
  units of `base_width` n_0 (the muTransfer convention of Yang et al. 2022,
  "Tensor Programs V"): s = sqrt(n_0 / n), learning rate lr * n / n_0 =
  lr / s^2. The default n_0 = 1 is Yang & Hu's muP itself; with n_0 = N,
  muP and ntk coincide at width N. As lr / s^2 with output multiplier s is
  Chizat's scaling with alpha = s, the function-space kernel stays
  lr * Theta_ntk at every width (the same infinite-width reference as ntk)
  while the parameters move sqrt(n / n_0) times more than under ntk: by
  O(1), so features learn at every width.

Constant factors (w_std, the fixed input fan-in) are those of the spec. All
three apply to conv nets too (window times channels is the fan-in).

What to expect under ntk (a fixed time t, width n): the parameters move by
O(n^-1/2) relative to their initialization, and the predictions differ from
the NTK prediction by O(n^-1/2) (the empirical NTK at initialization
fluctuates by that much). The NTK itself moves less: Lee et al. bound its
relative change by O(n^-1/2), but its leading term is O(1/n) for smooth
activations (Dyer & Gur-Ari 2020, "Asymptotics of wide networks from Feynman
diagrams"; Huang & Yau 2020, "Dynamics of deep neural networks and neural
tangent hierarchy"), about n^-3/4 for ReLU (activation patterns flip). Under
muP both stay O(1).

Measured along training (the `History` fields), on a probe set of training
examples for kernels:

- kernel_movement: ||K_t - K_0||_F / ||K_0||_F, K the empirical NTK of f;
- param_movement: ||theta_t - theta_0|| / ||theta_0||, all trainable parameters as the optimizer
  sees them (N(0, 1) under ntk and mup); with several n x n hidden layers this is O(1/n) under ntk;
- alignment: kernel-target alignment <K_t, Y Y^T>_F / (||K_t||_F ||Y Y^T||_F)
  (Cristianini et al. 2002, "On kernel-target alignment");
- train_loss, test_loss: 1/(2n) sum_i ||g(x_i) - y_i||^2 (the training objective, unscaled);
- ntk_distance: sqrt(mean_i ||g_t(x_i) - g^inf_t(x_i)||^2) on the test set,
  the distance to the infinite-width NTK prediction at the same time t;
- ntk_test_loss, ntk_train_loss: the losses of that prediction.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .errors import SpecError
from .finite import FiniteNet, finite_shapes, network
from .graph import Graph
from .kernel import as_graph
from .ops import Shape

__all__ = [
    "PARAMETERIZATIONS",
    "Comparison",
    "Data",
    "History",
    "Model",
    "Reference",
    "alignment",
    "compare",
    "concrete_graph",
    "empirical_ntk",
    "eval_steps",
    "init_params",
    "model",
    "plot",
    "prepare",
    "relative_change",
    "slope",
    "targets",
    "train",
]

PARAMETERIZATIONS = ("ntk", "standard", "mup")
DEFAULT_BASE_WIDTH = 1


# --------------------------------------------------------------------------- data


class Data(NamedTuple):
    """Inputs shaped for the spec and float32 targets (n, k)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    name: str = ""


def targets(y: np.ndarray, n_classes: int | None = None) -> np.ndarray:
    """Regression targets (n, k): centred one-hot for class indices (1 - 1/k for the class,
    -1/k elsewhere; Lee et al. 2019 regress on one-hot too), a column for float targets."""
    y = np.asarray(y)
    if np.issubdtype(y.dtype, np.integer):
        k = int(n_classes or (y.max() + 1))
        return (np.eye(k, dtype=np.float32)[y] - 1.0 / k).astype(np.float32)
    y = y.astype(np.float32)
    return y[:, None] if y.ndim == 1 else y


def prepare(spec, data, *, n_train: int | None = 200, n_test: int | None = 200, preprocess: str = "standardize",
            seed: int = 0, **overrides) -> Data:
    """A `datasets.Dataset` made ready to train the spec on: a class-balanced subset, preprocessed
    (see `datasets.PREPROCESSORS`), inputs reshaped to the spec's input, targets from `targets`;
    float targets are standardized on the training split."""
    from . import datasets

    graph = as_graph(spec, **overrides)
    if isinstance(data, str):
        data = datasets.load(data)
    data = datasets.subset(data, n_train, n_test, seed)
    data = datasets.preprocess(data, preprocess)
    x_train = datasets.reshape_for(np.asarray(data.x_train, np.float32), graph.input_shape)
    x_test = datasets.reshape_for(np.asarray(data.x_test, np.float32), graph.input_shape)
    if data.is_classification:
        k = int(max(data.y_train.max(), data.y_test.max()) + 1)
        y_train, y_test = targets(data.y_train, k), targets(data.y_test, k)
    else:
        y_train, y_test = targets(data.y_train), targets(data.y_test)
        mean, std = y_train.mean(0), y_train.std(0)
        std = np.where(std > 0, std, 1.0)
        y_train, y_test = (y_train - mean) / std, (y_test - mean) / std
    return Data(x_train, y_train.astype(np.float32), x_test, y_test.astype(np.float32), data.name)


# --------------------------------------------------------------------------- the model


def _output_linear(graph: Graph) -> int | None:
    """The dense/conv node whose channels reach the output unchanged (through activations), or None."""
    node = graph.output
    while True:
        if node.op.fresh == "yes":  # a dense-like layer with a width
            return node.id
        if len(node.inputs) != 1:
            return None
        spatial = graph.nodes[node.inputs[0]].shape.spatial
        try:
            keeps = all(node.op.shape((Shape(spatial, c),), "ntk").channels == c for c in (7, 11))
        except SpecError:
            return None
        if not keeps:
            return None
        node = graph.nodes[node.inputs[0]]


def concrete_graph(spec, width: int, n_out: int | None = None, parameterization: str | None = None,
                   **overrides) -> Graph:
    """The spec's graph with every width-less dense/conv given its finite width (`width`, or what
    `finite.finite_shapes` pins), the output layer given `n_out` channels, and the parameterization
    set ("ntk" or "standard"). Its kernel (`ik.compile`) is the infinite-width kernel of the
    ntk parameterization, or the standard-parameterization NTK at these widths."""
    graph = as_graph(spec, **overrides)
    parameterization = parameterization or graph.parameterization
    if graph.output.shape.rank:
        raise SpecError(f"the network's output still has spatial axes ({graph.output.shape})", graph.output.where,
                        "end it with flatten or gap, then dense")
    shapes = finite_shapes(graph, width)
    widths = {n.id: shapes[n.id].channels for n in graph.nodes if n.op.fresh == "yes" and n.op.width is None}
    if n_out is not None and shapes[-1].channels != n_out:
        out = _output_linear(graph)
        if out is None or graph.nodes[out].op.width is not None:
            raise SpecError(f"the network has {shapes[-1].channels} outputs but the targets have {n_out}",
                            graph.output.where, "end the spec with a dense layer without width= (or width="
                            f"{n_out})")
        widths[out] = n_out
    nodes = []
    for node in graph.nodes:
        op = node.op
        if node.id in widths:
            op = dataclasses.replace(op, width=widths[node.id])
        if node.inputs:
            shape = op.shape(tuple(nodes[i].shape for i in node.inputs), parameterization)
        else:
            shape = node.shape
        nodes.append(dataclasses.replace(node, op=op, shape=shape))
    return Graph(nodes, parameterization, dict(graph.lets))


@dataclass(frozen=True, eq=False)
class Model:
    """A finite network of one width trained as g = m (f(theta) - f(theta_0)) on the loss scaled by 1/m^2.

    `net` is the finite network of the ntk parameterization (under ntk and mup)
    or of the standard one; `multiplier` is m = alpha * s with s = sqrt(base_width / width)
    under mup and 1 otherwise (see the module docstring)."""

    net: FiniteNet
    parameterization: str
    width: int
    alpha: float
    multiplier: float
    center: bool
    base_width: int

    @property
    def graph(self) -> Graph:
        """The concrete graph whose kernel is the infinite-width reference of this model."""
        return self.net.graph

    @property
    def n_out(self) -> int:
        return self.net.n_out

    def init(self, seed: int) -> dict:
        """Initial parameters for `seed` (see `init_params`)."""
        return init_params(self.net, seed)

    def with_alpha(self, alpha: float) -> "Model":
        """The same network (and compiled code) with another output scale alpha."""
        _check_alpha(alpha, self.center)
        return dataclasses.replace(self, alpha=float(alpha), multiplier=self.multiplier / self.alpha * float(alpha))

    def f(self, params, x):
        """The network's raw output (n, k)."""
        return self.net.flat_apply(params, x)

    def outputs(self, params, x, f0=None):
        """g(x) = m (f(x) - f0) when centred (f0: f(x; theta_0)), m f(x) otherwise."""
        y = self.f(params, x)
        if self.center:
            y = y - f0
        return self.multiplier * y

    def __repr__(self) -> str:
        n_params = sum(math.prod(a.shape) for a in jax.tree.leaves(jax.eval_shape(self.net.init, jax.random.PRNGKey(0))))
        return (f"Model(width={self.width}, {self.parameterization}, alpha={self.alpha:g}, "
                f"multiplier={self.multiplier:.4g}, center={self.center}, {n_params} params)")


def init_params(net: FiniteNet, seed: int) -> dict:
    """Parameters with the distribution of `net.init` (the conventions in `infkernel.finite`: N(0, 1)
    under ntk; W ~ N(0, w_std^2 / fan_in), b ~ N(0, b_std^2) under standard), drawn with numpy.

    Drawing them with numpy costs no XLA compilation, which for a few
    `jax.random.normal` calls takes seconds per width on a small machine.
    Ops other than dense and conv get their own `init`."""
    structure = jax.eval_shape(net.init, jax.random.PRNGKey(0))
    rng = np.random.default_rng(seed)
    params, fallback = {}, None
    for node_id in sorted(structure):
        sub, node, ctx = structure[node_id], net.graph.nodes[node_id], net.ctxs[node_id]
        if not (node.op.linear and isinstance(sub, dict) and set(sub) <= {"w", "b"}):
            fallback = fallback if fallback is not None else net.init(jax.random.PRNGKey(seed), jnp.float32)
            params[node_id] = fallback[node_id]
            continue
        p = {name: rng.standard_normal(leaf.shape) for name, leaf in sorted(sub.items())}
        if ctx.parameterization == "standard":
            p["w"] = p["w"] * (node.op.w_std / math.sqrt(node.op.fan_in(ctx)))
            if "b" in p:
                p["b"] = p["b"] * (node.op.b_std or 0.0)
        params[node_id] = {name: jnp.asarray(a, jnp.float32) for name, a in p.items()}
    return params


def _check_alpha(alpha, center: bool) -> None:
    if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha > 0):
        raise SpecError(f"alpha must be a positive number, got {alpha!r}")
    if not center and alpha != 1:
        raise SpecError("alpha != 1 needs the centred model alpha * (f - f_0) (center=True)")


def model(spec, width: int, n_out: int, parameterization: str | None = None, *, alpha: float = 1.0,
          center: bool = True, base_width: int = DEFAULT_BASE_WIDTH, **overrides) -> Model:
    """The trainable model of a spec at width `width` with `n_out` outputs.

    `parameterization`: "ntk", "standard" or "mup" (default: the spec's own).
    `alpha`: Chizat et al.'s output scale. `base_width`: the width at which
    mup coincides with ntk."""
    graph = as_graph(spec, **overrides)
    p = parameterization or graph.parameterization
    if p not in PARAMETERIZATIONS:
        raise SpecError(f"unknown parameterization {p!r}", hint=f"expected one of {', '.join(PARAMETERIZATIONS)}")
    _check_alpha(alpha, center)
    if not (isinstance(base_width, int) and base_width >= 1):
        raise SpecError(f"base_width must be a positive integer, got {base_width!r}")
    cg = concrete_graph(graph, width, n_out, "standard" if p == "standard" else "ntk")
    net = network(cg, width)
    s = math.sqrt(base_width / width) if p == "mup" else 1.0
    return Model(net, p, width, float(alpha), float(alpha) * s, bool(center), base_width)


# --------------------------------------------------------------------------- measures


def empirical_ntk(fn, params, x, outputs: int | None = 1):
    """The empirical NTK (1/C) sum_{c < C} J_c J_c^T of fn(params, x) -> (n, k) on x, with J_c the
    Jacobian of output channel c with respect to all parameters (C = `outputs`, None: all k).

    One channel at a time (a scan), so about n * n_params floats of Jacobian are alive.
    Traceable. (`finite.FiniteNet.ntk` always averages over every output channel.)"""
    k = fn(params, x[:1]).shape[-1]
    c = k if outputs is None else min(int(outputs), k)

    def one(p, xi, ch):
        return fn(p, xi[None])[0, ch]

    def channel(theta, ch):
        j = jax.vmap(jax.grad(one), in_axes=(None, 0, None))(params, x, ch)
        leaves = [a.reshape(a.shape[0], -1) for a in jax.tree.leaves(j)]
        return theta + sum(a @ a.T for a in leaves), None

    theta = jnp.zeros((x.shape[0], x.shape[0]), jnp.float32)
    theta, _ = jax.lax.scan(channel, theta, jnp.arange(c))
    return theta / c


def alignment(k, y) -> float:
    """Kernel-target alignment <K, Y Y^T>_F / (||K||_F ||Y Y^T||_F) (Cristianini et al. 2002)."""
    k = np.asarray(k, np.float64)
    y = np.asarray(y, np.float64).reshape(len(k), -1)
    yy = y @ y.T
    den = np.linalg.norm(k) * np.linalg.norm(yy)
    return float(np.sum(k * yy) / den) if den > 0 else 0.0


def relative_change(a, a0) -> float:
    """||a - a0|| / ||a0|| (Frobenius / Euclidean over all entries)."""
    a, a0 = np.asarray(a, np.float64), np.asarray(a0, np.float64)
    den = np.linalg.norm(a0)
    return float(np.linalg.norm(a - a0) / den) if den > 0 else float("nan")


def slope(widths, values) -> float:
    """Least-squares slope of log(values) against log(widths)."""
    w, v = np.log(np.asarray(widths, np.float64)), np.log(np.asarray(values, np.float64))
    if len(w) < 2 or not np.all(np.isfinite(v)):
        return float("nan")
    return float(np.polyfit(w, v, 1)[0])


def _loss(g, y) -> float:
    return float(0.5 * np.mean(np.sum((np.asarray(g, np.float64) - y) ** 2, axis=-1)))


# --------------------------------------------------------------------------- the infinite-width reference


class Reference:
    """The infinite-width NTK gradient flow of a graph on the data (Lee et al. 2019).

    One kernel computation and one eigendecomposition serve every time, every
    initial output g_0 and every width that shares the graph's kernel."""

    def __init__(self, graph: Graph, data: Data):
        from .kernel import compile as compile_kernel
        from .predict import GradientFlow

        kfn = compile_kernel(graph)
        x_all = np.concatenate([data.x_train, data.x_test])
        k = kfn(x_all, dtype="float64", progress=False)
        n = len(data.x_train)
        self.n_train = n
        self.ntk_train = np.asarray(k.ntk[:n, :n], np.float64)
        self.ntk_test_train = np.asarray(k.ntk[n:, :n], np.float64)
        self.nngp_train = np.asarray(k.nngp[:n, :n], np.float64)
        self.nngp_test_train = np.asarray(k.nngp[n:, :n], np.float64)
        self.nngp_test_diag = np.asarray(np.diag(k.nngp)[n:], np.float64)
        self.y_train, self.y_test = data.y_train.astype(np.float64), data.y_test.astype(np.float64)
        self.flow = GradientFlow(self.ntk_train, self.y_train)

    def flow_time(self, t):
        """predict's time (loss 1/2 sum, learning rate 1) for time t = lr * step on the 1/(2n) mean loss."""
        return np.asarray(t, np.float64) / self.n_train

    def test_mean(self, t, g0_train=None, g0_test=None) -> np.ndarray:
        """g_t on the test set, (T, m, k) for an array of t."""
        return self.flow.mean(self.ntk_test_train, self.flow_time(t), f0_train=g0_train, f0_test=g0_test)

    def train_mean(self, t, g0_train=None) -> np.ndarray:
        return self.flow.train_mean(self.flow_time(t), f0_train=g0_train)

    def expected_test_loss(self, t, init_scale: float = 0.0) -> np.ndarray:
        """E over initializations of the test loss: the mean's loss plus the variance term, for
        initial outputs g_0 ~ GP(0, init_scale^2 K_nngp) (0 for a centred model)."""
        t = np.atleast_1d(np.asarray(t, np.float64))
        mean = self.test_mean(t)
        loss = 0.5 * np.mean(np.sum((mean - self.y_test) ** 2, axis=-1), axis=-1)
        if init_scale:
            var = self.flow.cov(self.ntk_test_train, self.nngp_test_train, self.nngp_test_diag, self.nngp_train,
                                self.flow_time(t))
            loss = loss + 0.5 * init_scale**2 * self.y_test.shape[1] * np.mean(var, axis=-1)
        return loss


# --------------------------------------------------------------------------- training


class History(NamedTuple):
    """Measurements at the evaluation steps of one training run (arrays over steps)."""

    step: np.ndarray
    t: np.ndarray
    kernel_movement: np.ndarray
    param_movement: np.ndarray
    alignment: np.ndarray
    train_loss: np.ndarray
    test_loss: np.ndarray
    ntk_distance: np.ndarray
    ntk_train_loss: np.ndarray
    ntk_test_loss: np.ndarray
    diverged: bool = False
    seconds: float = 0.0

    def final(self, field: str) -> float:
        return float(np.asarray(getattr(self, field))[-1])


MEASURES = ("kernel_movement", "param_movement", "alignment", "train_loss", "test_loss", "ntk_distance",
            "ntk_train_loss", "ntk_test_loss")


def eval_steps(steps: int, evals: int) -> np.ndarray:
    """0 and `evals` (about) equally spaced steps up to `steps`."""
    if not (isinstance(steps, int) and steps >= 1):
        raise SpecError(f"steps must be a positive integer, got {steps!r}")
    evals = max(1, min(int(evals), steps))
    return np.unique(np.round(np.linspace(0, steps, evals + 1)).astype(np.int64))


def _optimizer(lr, momentum: float):
    return optax.sgd(lr, momentum=momentum or None)


def _objective(net: FiniteNet, center: bool, multiplier, params, x, y, f0):
    """1/m^2 * 1/(2B) sum ||g - y||^2 on a batch, g = m (f - f0) or m f."""
    f = net.flat_apply(params, x)
    g = multiplier * (f - f0 if center else f)
    return 0.5 * jnp.mean(jnp.sum((g - y) ** 2, axis=-1)) / multiplier**2


# Jitted with the network static: models that share a network (other alpha, other seed) share
# the compiled code. The data are arguments, not closed-over constants, which XLA would fold.
@partial(jax.jit, static_argnames=("net", "center", "batch_size", "momentum"))
def _run(net, center, batch_size, momentum, params, state, key, f0, x_all, y_all, lr, multiplier, start, stop):
    opt = _optimizer(lr, momentum)
    n = x_all.shape[0]

    def step(i, carry):
        params, state = carry
        if batch_size is None:
            x, y, f0b = x_all, y_all, f0
        else:
            idx = jax.random.choice(jax.random.fold_in(key, i), n, (batch_size,), replace=False)
            x, y, f0b = x_all[idx], y_all[idx], f0[idx]
        grads = jax.grad(partial(_objective, net, center, multiplier))(params, x, y, f0b)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    return jax.lax.fori_loop(start, stop, step, (params, state))


@partial(jax.jit, static_argnames=("net", "kernel_outputs"))
def _evaluate(net, kernel_outputs, params, x_probe, x_train, x_test):
    k = empirical_ntk(net.flat_apply, params, x_probe, kernel_outputs)
    return k, net.flat_apply(params, x_train), net.flat_apply(params, x_test)


def _flat(params) -> np.ndarray:
    return np.concatenate([np.ravel(a) for a in jax.tree.leaves(params)]).astype(np.float64)


def _history(m: Model, data: Data, seed: int, steps: np.ndarray, reference: Reference | None, lr: float,
             batch_size: int | None, momentum: float, probe: int, kernel_outputs: int | None,
             progress=None) -> History:
    start_time = time.perf_counter()
    net, center, mult = m.net, m.center, m.multiplier
    x_train, y_train = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    x_test, x_probe = jnp.asarray(data.x_test), x_train[:probe]
    y_np, y_test, y_probe = np.asarray(data.y_train, np.float64), np.asarray(data.y_test, np.float64), data.y_train[:probe]
    batch_size = None if batch_size is None or batch_size >= len(data.x_train) else int(batch_size)
    key = jax.random.PRNGKey(seed)
    params = m.init(seed)
    flat0 = _flat(params)
    state = _optimizer(lr, momentum).init(params)
    k0, f0_train, f0_test = _evaluate(net, kernel_outputs, params, x_probe, x_train, x_test)
    k0 = np.asarray(k0, np.float64)

    def g(f, f0):
        f, f0 = np.asarray(f, np.float64), np.asarray(f0, np.float64)
        return mult * (f - f0 if center else f)

    t = lr * steps.astype(np.float64)
    if reference is not None:
        ref_test = reference.test_mean(t, g(f0_train, f0_train), g(f0_test, f0_test))
        ref_train = reference.train_mean(t, g(f0_train, f0_train))
    rows = {name: [] for name in MEASURES}
    diverged, done = False, 0
    k, f_train, f_test = k0, f0_train, f0_test
    for i, s in enumerate(steps):
        if s > done and not diverged:
            params, state = _run(net, center, batch_size, momentum, params, state, key, f0_train, x_train, y_train,
                                 lr, mult, done, int(s))
            done = int(s)
            k, f_train, f_test = _evaluate(net, kernel_outputs, params, x_probe, x_train, x_test)
        k = np.asarray(k, np.float64)
        gtr, gte = g(f_train, f0_train), g(f_test, f0_test)
        diverged = diverged or not (np.all(np.isfinite(gtr)) and np.all(np.isfinite(gte)) and np.all(np.isfinite(k)))
        if diverged:
            for name in MEASURES:
                rows[name].append(np.nan)
        else:
            rows["kernel_movement"].append(relative_change(k, k0))
            rows["param_movement"].append(relative_change(_flat(params), flat0))
            rows["alignment"].append(alignment(k, y_probe))
            rows["train_loss"].append(_loss(gtr, y_np))
            rows["test_loss"].append(_loss(gte, y_test))
            if reference is not None:
                rows["ntk_distance"].append(float(np.sqrt(np.mean(np.sum((gte - ref_test[i]) ** 2, axis=-1)))))
                rows["ntk_train_loss"].append(_loss(ref_train[i], y_np))
                rows["ntk_test_loss"].append(_loss(ref_test[i], y_test))
            else:
                for name in ("ntk_distance", "ntk_train_loss", "ntk_test_loss"):
                    rows[name].append(np.nan)
        if progress is not None:
            progress(1)
    return History(steps.copy(), t, *(np.asarray(rows[name]) for name in MEASURES),
                   diverged=diverged, seconds=time.perf_counter() - start_time)


def _check_training(lr, batch_size, momentum, probe, n_train):
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise SpecError(f"lr must be a positive number, got {lr!r}")
    if batch_size is not None and not (isinstance(batch_size, int) and batch_size >= 1):
        raise SpecError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not (0 <= momentum < 1):
        raise SpecError(f"momentum must be in [0, 1), got {momentum!r}")
    if not (isinstance(probe, int) and probe >= 1):
        raise SpecError(f"probe must be a positive integer, got {probe!r}")
    if n_train < 1:
        raise SpecError("the training set is empty")


def train(spec, data: Data, width: int, parameterization: str | None = None, *, alpha: float = 1.0,
          lr: float = 0.5, steps: int = 200, batch_size: int | None = None, momentum: float = 0.0,
          seed: int = 0, evals: int = 10, probe: int = 32, kernel_outputs: int | None = 1,
          center: bool = True, base_width: int = DEFAULT_BASE_WIDTH, reference: Reference | bool = True,
          **overrides) -> History:
    """Train one finite network of the spec (full-batch gradient descent, or SGD with `batch_size`)
    and measure it at `evals` + 1 equally spaced steps (see the module docstring).

    `spec` may also be a `Model`. `probe`: how many training examples the
    empirical NTK and the alignment are measured on. `kernel_outputs`: how many
    output channels the empirical NTK averages (None: all; the infinite NTK is
    the same for each). `reference`: a `Reference`, True to compute it, False
    for none (then the test and NTK measures are NaN)."""
    m = spec if isinstance(spec, Model) else model(spec, width, data.y_train.shape[1], parameterization,
                                                   alpha=alpha, center=center, base_width=base_width, **overrides)
    _check_training(lr, batch_size, momentum, probe, len(data.x_train))
    if reference is True:
        reference = Reference(m.graph, data)
    return _history(m, data, int(seed), eval_steps(steps, evals), reference or None, float(lr), batch_size,
                    float(momentum), probe, kernel_outputs)


# --------------------------------------------------------------------------- several widths


@dataclass(frozen=True)
class Comparison:
    """Training runs at several widths (and seeds), with the infinite-width reference.

    `runs[w]` holds one History per seed; `mean(w)` averages them over seeds
    (NaN where a seed diverged); `reference_test_loss[w]` is the expected test
    loss of the infinite-width NTK prediction at each evaluation step."""

    widths: tuple[int, ...]
    seeds: tuple[int, ...]
    parameterization: str
    alpha: float
    lr: float
    steps: int
    batch_size: int | None
    runs: dict
    reference_test_loss: dict
    reference_alignment: dict

    def mean(self, width: int) -> History:
        hs = self.runs[width]
        fields = {name: np.mean([getattr(h, name) for h in hs], axis=0) for name in MEASURES}
        return History(hs[0].step, hs[0].t, **fields, diverged=any(h.diverged for h in hs),
                       seconds=sum(h.seconds for h in hs))

    def final(self, field: str) -> np.ndarray:
        """The seed-averaged value of a measure at the last step, per width."""
        return np.array([self.mean(w).final(field) for w in self.widths])

    def slope(self, field: str = "kernel_movement") -> float:
        """Log-log slope of the final value of a measure against width."""
        return slope(self.widths, self.final(field))

    def verdict(self) -> str:
        """In words: does the kernel movement vanish with width like n^-1/2 (the kernel regime)?"""
        if len(self.widths) < 2:
            return "one width: no trend"
        s = self.slope("kernel_movement")
        move = self.final("kernel_movement")[-1]
        if not math.isfinite(s):
            return "undetermined (a run diverged)"
        if s <= -0.35:
            return (f"kernel regime: the NTK's movement falls like width^{s:.2f} (lazy training: at least as fast "
                    f"as width^-1/2), the parameters' like width^{self.slope('param_movement'):.2f}; "
                    f"at width {self.widths[-1]} the NTK moved {100 * move:.2g}%")
        if s >= -0.15:
            return (f"feature learning: the kernel movement does not vanish with width (slope {s:.2f}); "
                    f"at width {self.widths[-1]} the NTK moved {100 * move:.2g}%")
        return f"in between: kernel movement slope {s:.2f} (lazy: -1/2, feature learning: 0)"


def compare(spec, data: Data, widths: Sequence[int] = (64, 256, 1024), parameterization: str | None = None, *,
            seeds: Sequence[int] = (0,), alpha: float = 1.0, lr: float = 0.5, steps: int = 200,
            batch_size: int | None = None, momentum: float = 0.0, evals: int = 10, probe: int = 32,
            kernel_outputs: int | None = 1, center: bool = True, base_width: int = DEFAULT_BASE_WIDTH,
            reference: bool | Reference = True, progress: bool | None = None, **overrides) -> Comparison:
    """Train the spec at every width and seed with the same data and hyperparameters (see `train`).

    `reference`: True computes the infinite-width reference (once, or once per
    width under the standard parameterization, whose NTK depends on the
    width); a `Reference` made for this spec and data is used as it is (not
    for the standard parameterization); False: none."""
    from tqdm.auto import tqdm

    graph = as_graph(spec, **overrides)
    widths = tuple(int(w) for w in widths)
    if not widths or min(widths) < 1:
        raise SpecError(f"widths must be positive integers, got {widths}")
    seeds = tuple(int(s) for s in seeds) or (0,)
    _check_training(lr, batch_size, momentum, probe, len(data.x_train))
    p = parameterization or graph.parameterization
    k = data.y_train.shape[1]
    steps_at = eval_steps(steps, evals)
    models = {w: model(graph, w, k, p, alpha=alpha, center=center, base_width=base_width) for w in widths}
    refs: dict[int, Reference] = {}
    ref_loss, ref_align = {}, {}
    cache: dict[str, Reference] = {}
    if isinstance(reference, Reference):
        if p == "standard":
            raise SpecError("the standard parameterization's NTK depends on the width: pass reference=True")
        cache["all"] = reference
    for w, m in models.items():
        if not reference:
            break
        key = "all" if p != "standard" else str(w)  # the ntk kernel does not depend on the widths
        if key not in cache:
            cache[key] = Reference(m.graph, data)
        refs[w] = cache[key]
        scale = 0.0 if center else m.multiplier
        ref_loss[w] = refs[w].expected_test_loss(lr * steps_at.astype(np.float64), scale)
        ref_align[w] = alignment(refs[w].ntk_train[:probe, :probe], data.y_train[:probe])
    runs = {}
    total = len(widths) * len(seeds) * len(steps_at)
    with tqdm(total=total, desc="training", unit="eval", delay=2.0, disable=progress is False, leave=False) as bar:
        for w in widths:
            bar.set_postfix(width=w)
            runs[w] = [_history(models[w], data, s, steps_at, refs.get(w), float(lr), batch_size, float(momentum),
                                probe, kernel_outputs, bar.update) for s in seeds]
    return Comparison(widths, seeds, p, float(alpha), float(lr), int(steps), batch_size, runs, ref_loss, ref_align)


# --------------------------------------------------------------------------- the picture


def plot(cmp: Comparison, path, title: str = "") -> None:
    """Kernel movement and test loss against step for each width, with the infinite-width NTK
    prediction beside them, and the final kernel movement and distance to that prediction against width."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12.5, 3.7), dpi=90)
    colors = plt.cm.viridis(np.linspace(0.0, 0.85, len(cmp.widths)))
    ax_k, ax_l, ax_w = axes
    same_ref = len({np.asarray(v).tobytes() for v in cmp.reference_test_loss.values()}) <= 1
    for w, c in zip(cmp.widths, colors):
        h = cmp.mean(w)
        ax_k.plot(h.step[1:], h.kernel_movement[1:], color=c, label=f"width {w}")
        ax_l.plot(h.step, h.test_loss, color=c, label=f"width {w}")
        if not same_ref and w in cmp.reference_test_loss:
            ax_l.plot(h.step, cmp.reference_test_loss[w], color=c, ls="--", lw=1)
    if same_ref and cmp.reference_test_loss:
        h = cmp.mean(cmp.widths[0])
        ax_l.plot(h.step, next(iter(cmp.reference_test_loss.values())), color="k", ls="--", lw=1.5,
                  label="infinite width (NTK)")
    elif cmp.reference_test_loss:
        ax_l.plot([], [], color="gray", ls="--", lw=1, label="NTK at that width")
    ax_k.axhline(0, color="k", ls="--", lw=1.5, label="infinite width (NTK): 0")
    ax_k.set_yscale("symlog", linthresh=1e-3)
    ax_k.set(xlabel="step", ylabel=r"$\|K_t - K_0\|_F / \|K_0\|_F$", title="kernel movement")
    ax_l.set(xlabel="step", ylabel="test loss  (1/2n) sum ||g - y||^2", title="test loss")
    ax_k.legend(fontsize=7)
    ax_l.legend(fontsize=7)
    w = np.asarray(cmp.widths, np.float64)
    km, pm, dist = cmp.final("kernel_movement"), cmp.final("param_movement"), cmp.final("ntk_distance")
    ax_w.loglog(w, km, "o-", color="C3", label=f"kernel movement (slope {cmp.slope('kernel_movement'):.2f})")
    ax_w.loglog(w, pm, "^-", color="C2", label=f"parameter movement (slope {cmp.slope('param_movement'):.2f})")
    if np.all(np.isfinite(dist)):
        ax_w.loglog(w, dist, "s-", color="C0", label=f"|g - g_NTK| on test (slope {cmp.slope('ntk_distance'):.2f})")
    for values, power, style in ((pm, -0.5, ":"), (km, -1.0, "--")):
        if np.isfinite(values[0]) and values[0] > 0 and len(w) > 1:
            ax_w.loglog(w, values[0] * (w / w[0]) ** power, color="gray", ls=style, lw=1,
                        label=f"width^{power:g}")
    ax_w.set(xlabel="width", title=f"at step {cmp.steps}")
    ax_w.legend(fontsize=6.5, loc="lower left")
    fig.suptitle(title or f"{cmp.parameterization} parameterization, alpha={cmp.alpha:g}, lr={cmp.lr:g}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
