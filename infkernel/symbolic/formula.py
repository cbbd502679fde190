"""Activation formulas: text -> sympy expression in the real variable `x`.

The grammar is `formula.lark` (LALR). The tree is turned into sympy by a
whitelist of names and functions; user text never reaches eval, exec, sympify
or parse_expr. Every problem is a `FormulaError` (a `SpecError`) whose
`offset` is the 0-based position in the formula, so the spec parser can
re-place it inside the spec line with `FormulaError.placed`.

Limits keep every formula cheap to parse and to derive: at most
`MAX_LENGTH` characters, `MAX_DEPTH` levels of nesting, constant exponents
only (an integer of at most `MAX_POWER` in absolute value on an x-dependent
base) and a polynomial degree of at most `MAX_DEGREE`.
"""
from __future__ import annotations

import difflib
import math
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import lark
import numpy as np
import sympy as sp

from ..errors import SpecError, Where
from .arrays import ArrayFunction, array_fn

X = sp.Symbol("x", real=True)
MAX_LENGTH, MAX_DEPTH, MAX_POWER, MAX_DEGREE = 400, 32, 16, 24


class sigmoid(ArrayFunction):
    """1 / (1 + exp(-x)), kept whole so that it evaluates stably."""

    @classmethod
    def array(cls, ops, a):
        return ops.sigmoid(a)

    def fdiff(self, argindex=1):
        s = sigmoid(self.args[0])
        return s * (1 - s)

    def _eval_rewrite_as_exp(self, arg, **kwargs):
        return 1 / (1 + sp.exp(-arg))

    def _latex(self, printer, exp=None):
        tex = r"\sigma\left(%s\right)" % printer._print(self.args[0])
        return tex if exp is None else r"%s^{%s}" % (tex, exp)


class softplus(ArrayFunction):
    """log(1 + exp(x)), kept whole so that it evaluates without overflow."""

    @classmethod
    def array(cls, ops, a):
        return ops.xp.logaddexp(0.0, a)

    def fdiff(self, argindex=1):
        return sigmoid(self.args[0])

    def _eval_rewrite_as_exp(self, arg, **kwargs):
        return sp.log(1 + sp.exp(arg))

    def _latex(self, printer, exp=None):
        tex = r"\operatorname{softplus}\left(%s\right)" % printer._print(self.args[0])
        return tex if exp is None else r"%s^{%s}" % (tex, exp)


class FormulaError(SpecError):
    """A `SpecError` in an activation formula.

    `where` is line 1 of the formula itself; `offset` is the 0-based offset of
    the offending character in the formula string.
    """

    def __init__(self, message: str, formula: str, offset: int, hint: str | None = None):
        super().__init__(message, Where(1, offset + 1, formula), hint)
        self.formula, self.offset = formula, offset

    def placed(self, line: int, start_column: int, text: str) -> SpecError:
        """The same error inside a spec: `start_column` (1-based) is where the
        formula begins in the spec line `text`."""
        return SpecError(self.message, Where(line, start_column + self.offset, text), self.hint)


NAMES = {"x": X, "pi": sp.pi}
FUNCTIONS = {  # name: (number of arguments, sympy constructor)
    "exp": (1, sp.exp), "sin": (1, sp.sin), "cos": (1, sp.cos), "tanh": (1, sp.tanh),
    "erf": (1, sp.erf), "sqrt": (1, sp.sqrt), "abs": (1, sp.Abs), "sign": (1, sp.sign), "max": (2, sp.Max),
    "sigmoid": (1, sigmoid), "softplus": (1, softplus),
}
_TERMINALS = {"NUMBER": "a number", "NAME": "a name", "LPAR": "'('", "RPAR": "')'",
              "COMMA": "','", "ADDOP": "'+' or '-'", "MULOP": "'*' or '/'", "POWOP": "'**'"}


@lru_cache(maxsize=1)
def _parser() -> lark.Lark:
    grammar = (Path(__file__).with_name("formula.lark")).read_text()
    return lark.Lark(grammar, parser="lalr", propagate_positions=True, maybe_placeholders=True)


def parse(formula: str) -> sp.Expr:
    """The sympy expression (in `X`, the real symbol x) of an activation formula.

    Raises `FormulaError` for text outside the whitelist, a syntax error, a
    value that is not real and finite on the whole line (a zero denominator,
    the square root of a negative number), or a formula over the limits.
    """
    if len(formula) > MAX_LENGTH:
        raise FormulaError(f"formula longer than {MAX_LENGTH} characters", formula, MAX_LENGTH)
    try:
        tree = _parser().parse(formula)
    except lark.exceptions.UnexpectedInput as e:
        raise _syntax_error(e, formula) from None
    _check_depth(tree, formula)
    return _Builder(formula).build(tree)


def _syntax_error(e: lark.exceptions.UnexpectedInput, formula: str) -> FormulaError:
    if isinstance(e, lark.exceptions.UnexpectedCharacters):
        char = formula[e.pos_in_stream]
        hint = "use ** for powers" if char == "^" else "allowed: numbers, x, pi, + - * / ** ( ) and " + ", ".join(FUNCTIONS)
        return FormulaError(f"unexpected character {char!r}", formula, e.pos_in_stream, hint)
    expected = sorted(_TERMINALS.get(t, t) for t in getattr(e, "expected", ()) or ())
    hint = "expected " + ", ".join(expected) if expected else None
    token = getattr(e, "token", None)
    if token is None or token.type == "$END":
        message = "empty formula" if not formula.strip() else "formula ends too early"
        return FormulaError(message, formula, len(formula.rstrip()), hint)
    return FormulaError(f"unexpected {str(token)!r}", formula, token.start_pos, hint)


def _offset(node) -> int:
    """0-based offset of a tree or token."""
    if isinstance(node, lark.Token):
        return node.start_pos or 0
    return getattr(node.meta, "start_pos", 0) or 0


def _check_depth(tree: lark.Tree, formula: str) -> None:
    """Nesting over MAX_DEPTH is an error (checked without recursion)."""
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise FormulaError(f"formula nested more than {MAX_DEPTH} levels deep", formula, _offset(node))
        if isinstance(node, lark.Tree):
            stack.extend((child, depth + 1) for child in node.children if child is not None)


def _degree(e: sp.Expr) -> int:
    """An upper bound on the polynomial degree in x of `e` (0 if free of x)."""
    if not e.has(X):
        return 0
    if e == X:
        return 1
    if e.is_Add:
        return max(_degree(a) for a in e.args)
    if e.is_Mul:
        return sum(_degree(a) for a in e.args)
    if e.is_Pow and e.exp.is_Integer and e.exp > 0:
        return int(e.exp) * _degree(e.base)
    return 0  # a function of x: its polynomial arguments were checked on their own


class _Builder:
    """Turns a parse tree into sympy, checking each node against the limits."""

    def __init__(self, formula: str):
        self.formula = formula

    def error(self, message: str, node, hint: str | None = None) -> FormulaError:
        return FormulaError(message, self.formula, _offset(node), hint)

    def build(self, node) -> sp.Expr:
        e = getattr(self, node.data)(node)
        if _degree(e) > MAX_DEGREE:
            raise self.error(f"polynomial degree over {MAX_DEGREE}", node)
        if e.has(sp.zoo, sp.nan, sp.oo, -sp.oo):
            raise self.error("division by zero", node)
        return e

    def number(self, node) -> sp.Expr:
        token = node.children[0]
        value = Fraction(str(token)) if _sane_literal(str(token)) else None
        if value is None:
            raise self.error(f"number {str(token)!r} out of range", token, "use at most 20 digits and an exponent within 1e-300..1e300")
        return sp.Rational(value.numerator, value.denominator)

    def name(self, node) -> sp.Expr:
        token = node.children[0]
        if str(token) in NAMES:
            return NAMES[str(token)]
        if str(token) in FUNCTIONS:
            raise self.error(f"{token} is a function", token, f"write {token}(...)")
        raise self.error(f"unknown name {str(token)!r}", token, _did_you_mean(str(token)))

    def call(self, node) -> sp.Expr:
        token, *args = node.children
        args = [a for a in args if a is not None]
        if str(token) in NAMES:
            raise self.error(f"{token} is not a function", token, "write * for products")
        if str(token) not in FUNCTIONS:
            raise self.error(f"unknown function {str(token)!r}", token, _did_you_mean(str(token)))
        arity, make = FUNCTIONS[str(token)]
        if len(args) != arity:
            raise self.error(f"{token} takes {arity} argument{'s' * (arity > 1)}, got {len(args)}", token)
        values = [self.build(a) for a in args]
        if str(token) == "sqrt":
            self.check_sign(values[0], args[0], strict=False)
        return make(*values)

    def sum(self, node) -> sp.Expr:
        e = self.build(node.children[0])
        for op, term in zip(node.children[1::2], node.children[2::2]):
            e = e + self.build(term) if op == "+" else e - self.build(term)
        return e

    def product(self, node) -> sp.Expr:
        e = self.build(node.children[0])
        for op, factor in zip(node.children[1::2], node.children[2::2]):
            f = self.build(factor)
            if op == "/":
                self.check_sign(f, factor, strict=True)
                f = 1 / f
            e = e * f
        return e

    def signed(self, node) -> sp.Expr:
        op, operand = node.children
        e = self.build(operand)
        return -e if op == "-" else e

    def pow(self, node) -> sp.Expr:
        base_node, _, exp_node = node.children
        base, exp = self.build(base_node), self.build(exp_node)
        if exp.has(X):
            if base.has(X) or not base.is_positive:
                raise self.error("an x-dependent exponent needs a positive constant base", exp_node)
            return sp.exp(exp * sp.log(base))
        if base.has(X):
            if not (exp.is_Integer and abs(exp) <= MAX_POWER):
                if not (exp.is_real and base.is_positive):
                    raise self.error(f"the power of an x-dependent base must be an integer of at most {MAX_POWER}",
                                     exp_node, "use sqrt(abs(...)) for roots")
            if exp.is_negative:
                self.check_sign(base, base_node, strict=True)
            return base**exp
        return self.constant_power(base, exp, node)

    def constant_power(self, base: sp.Expr, exp: sp.Expr, node) -> sp.Expr:
        b, e = complex(sp.N(base)), complex(sp.N(exp))
        if b.imag or e.imag or not (math.isfinite(b.real) and math.isfinite(e.real)):
            raise self.error("constant power out of range", node)
        if b.real == 0 and e.real < 0:
            raise self.error("division by zero", node)
        if b.real < 0 and not exp.is_integer:
            raise self.error("a negative number to a fractional power is not real", node)
        if b.real != 0 and abs(e.real * math.log(abs(b.real))) > 690:
            raise self.error("constant power out of range", node)
        return base**exp

    def check_sign(self, e: sp.Expr, node, strict: bool) -> None:
        """A denominator (strict) must not vanish, a square root's argument
        must not be negative, anywhere on the real line."""
        bad = _vanishes(e) if strict else _negative(e)
        if bad:
            what = "division by zero" if strict else "square root of a negative number"
            raise self.error(f"{what} on the real line", node, "keep it away from zero, e.g. with abs() or 1 + ...")


def _sane_literal(text: str) -> bool:
    mantissa, _, exponent = text.lower().partition("e")
    return sum(ch.isdigit() for ch in mantissa) <= 20 and abs(int(exponent or 0)) <= 300


def _did_you_mean(word: str) -> str | None:
    close = difflib.get_close_matches(word.lower(), [*NAMES, *FUNCTIONS], n=1, cutoff=0.5)
    return f"did you mean {close[0]!r}?" if close else None


def _values(e: sp.Expr) -> list[float]:
    """e on a grid of x in [-20, 20] (a heuristic where sympy cannot decide)."""
    with np.errstate(all="ignore"):
        values = np.asarray(array_fn(e, [X], "numpy")(np.linspace(-20, 20, 641)))
    return [v.real if v.imag == 0 else math.nan for v in values.astype(complex)]


def _poly_real_roots(e: sp.Expr):
    """(real roots with multiplicity, leading coefficient) if e is a polynomial."""
    if not e.is_polynomial(X):
        return None
    p = sp.Poly(e, X)
    return sp.real_roots(p), p.LC()


def _vanishes(e: sp.Expr) -> bool:
    if e.is_zero:
        return True
    if not e.has(X) or e.is_positive or e.is_negative:
        return False
    poly = _poly_real_roots(e)
    if poly is not None:
        return bool(poly[0])
    values = _values(e)
    return any(not math.isfinite(v) or v == 0 for v in values) or (min(values) < 0 < max(values))


def _negative(e: sp.Expr) -> bool:
    if not e.has(X):
        return bool(e.is_negative)
    if e.is_nonnegative:
        return False
    poly = _poly_real_roots(e)
    if poly is not None:
        roots, lc = poly
        return lc < 0 or any(roots.count(r) % 2 for r in set(roots))
    return any(not math.isfinite(v) or v < 0 for v in _values(e))
