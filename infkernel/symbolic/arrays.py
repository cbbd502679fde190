"""sympy expressions -> elementwise array functions (jax.numpy or numpy).

A small interpreter over the expression tree, not code generation (no exec,
no lambdify): each node maps to one array operation, shared subexpressions
are evaluated once per call, and subtrees free of the variables become
Python floats (weakly typed, so they follow the inputs' dtype).
Arguments of asin/acos are clipped to [-1, 1].
"""
from __future__ import annotations

import functools
import operator
from types import SimpleNamespace

import numpy as np
import sympy as sp


class ArrayFunction(sp.Function):
    """A sympy function that also knows how to evaluate itself on arrays."""

    @classmethod
    def array(cls, ops: SimpleNamespace, *args):
        raise NotImplementedError


@functools.lru_cache(maxsize=None)
def backend(name: str) -> SimpleNamespace:
    """The array namespace `ops.xp` plus the special functions numpy lacks."""
    if name == "jax":
        import jax
        import jax.numpy as jnp

        return SimpleNamespace(xp=jnp, erf=jax.scipy.special.erf, sigmoid=jax.nn.sigmoid)
    if name == "numpy":
        import scipy.special

        return SimpleNamespace(xp=np, erf=scipy.special.erf, sigmoid=scipy.special.expit)
    raise ValueError(f"unknown backend {name!r}")


def safe_correlation(xp, c, v1, v2):
    """c / sqrt(v1 v2) clipped to [-1, 1], and 0 (not 0/0) where v1 v2 = 0;
    the inner where keeps gradients finite there."""
    norm = xp.sqrt(xp.maximum(v1 * v2, 0))
    return xp.where(norm > 0, xp.clip(c / xp.where(norm > 0, norm, 1), -1, 1), 0)


def _clip(ops, a):
    return ops.xp.clip(a, -1, 1)


_FUNCS = {
    "exp": lambda o, a: o.xp.exp(a), "log": lambda o, a: o.xp.log(a),
    "sin": lambda o, a: o.xp.sin(a), "cos": lambda o, a: o.xp.cos(a),
    "tanh": lambda o, a: o.xp.tanh(a), "erf": lambda o, a: o.erf(a),
    "Abs": lambda o, a: o.xp.abs(a), "sign": lambda o, a: o.xp.sign(a),
    "asin": lambda o, a: o.xp.arcsin(_clip(o, a)), "acos": lambda o, a: o.xp.arccos(_clip(o, a)),
    "atan": lambda o, a: o.xp.arctan(a),
    "re": lambda o, a: o.xp.real(a), "im": lambda o, a: o.xp.imag(a),
    "Heaviside": lambda o, a, h0=0.5: o.xp.heaviside(a, h0),
    "Max": lambda o, *a: functools.reduce(o.xp.maximum, a),
    "Min": lambda o, *a: functools.reduce(o.xp.minimum, a),
}


def array_fn(expr: sp.Expr, symbols, backend_name: str = "jax", defs=()):
    """f(*arrays) evaluating `expr` with `symbols` bound to broadcastable
    arrays, after the definitions `defs` ((symbol, value) pairs, in order)."""
    ops = backend(backend_name)
    symbols, defs = tuple(symbols), tuple(defs)

    def fn(*arrays):
        memo = dict(zip(symbols, arrays))
        for symbol, value in defs:
            memo[symbol] = _eval(value, memo, ops)
        out = _eval(expr, memo, ops)
        shape = np.broadcast_shapes(*(np.shape(a) for a in arrays))
        if np.shape(out) != shape:
            out = out + ops.xp.zeros(shape, ops.xp.result_type(*arrays, 0.0))
        return out

    return fn


def _eval(e: sp.Expr, memo: dict, ops: SimpleNamespace):
    if e in memo:
        return memo[e]
    if not e.free_symbols:
        value = complex(sp.N(e, 17))
        out = value.real if value.imag == 0 else value
    elif e.is_Add:
        out = functools.reduce(operator.add, (_eval(a, memo, ops) for a in e.args))
    elif e.is_Mul:
        out = functools.reduce(operator.mul, (_eval(a, memo, ops) for a in e.args))
    elif e.is_Pow:
        out = _power(_eval(e.base, memo, ops), e.exp, memo, ops)
    elif isinstance(e, ArrayFunction):
        out = type(e).array(ops, *(_eval(a, memo, ops) for a in e.args))
    elif type(e).__name__ in _FUNCS:
        args = [_eval(a, memo, ops) for a in e.args]
        out = _FUNCS[type(e).__name__](ops, *args)
    else:
        raise NotImplementedError(f"no array rule for {type(e).__name__}")
    memo[e] = out
    return out


def _power(base, exp: sp.Expr, memo, ops):
    if exp == sp.S.Half:
        return ops.xp.sqrt(base)
    if exp == -sp.S.Half:
        return 1 / ops.xp.sqrt(base)
    if exp.is_Integer:
        return base ** int(exp)
    return ops.xp.power(base, _eval(exp, memo, ops))
