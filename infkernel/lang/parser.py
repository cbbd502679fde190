"""Spec text -> layers -> Graph.

The lark grammar (grammar.lark) gives a parse tree; `_Resolver` walks it,
evaluates `let` arithmetic with its own small evaluator (spec text is never
passed to eval, exec or sympy), expands named blocks, builds op instances
from their arguments, and hands the layers to `infkernel.graph.build`.
Every error is a SpecError with line, column and a caret.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import numbers
import os
from functools import lru_cache
from pathlib import Path

from lark import Lark, Token, Tree
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken
from lark.indenter import Indenter

from ..errors import SpecError, Where
from ..graph import At, Graph, Parallel, Repeat, Residual, build, join_modes
from ..ops import REGISTRY

KEYWORDS = ("input", "parameterization", "let", "repeat", "residual", "parallel", "branch", "block")
FUNCTIONS = {"sqrt": math.sqrt, "exp": math.exp, "log": math.log, "abs": abs}
CONSTANTS = {"pi": math.pi, "e": math.e}
MAX_NESTING = 64
# Activations without an op of their own, as `act` formulas (the formula language's functions and
# common names for compositions of them); an op of that name points to the formula.
ACT_FORMULAS = {
    "tanh": "tanh(x)", "sigmoid": "sigmoid(x)", "logistic": "sigmoid(x)", "softplus": "softplus(x)",
    "exp": "exp(x)", "cos": "cos(x)", "abs": "abs(x)", "swish": "x*sigmoid(x)",
    "silu": "x*sigmoid(x)", "mish": "x*tanh(softplus(x))", "softsign": "x/(1 + abs(x))", "square": "x**2",
    "quadratic": "x**2", "cube": "x**3", "gaussian": "exp(-x**2)", "rbf": "exp(-x**2)",
}
FRIENDLY = {"_NL": "end of line", "_INDENT": "an indented block", "_DEDENT": "end of block", "$END": "end of file",
            "NAME": "a name", "NUMBER": "a number", "DIMS": "dimensions like 3x3", "STRING": "a quoted formula",
            "LPAR": "'('", "RPAR": "')'", "COLON": "':'", "EQUAL": "'='", "COMMA": "','"}


class _SpecIndenter(Indenter):
    NL_type = "_NL"
    OPEN_PAREN_types = ["LPAR"]
    CLOSE_PAREN_types = ["RPAR"]
    INDENT_type = "_INDENT"
    DEDENT_type = "_DEDENT"
    tab_len = 8


@lru_cache(maxsize=1)
def _lark() -> Lark:
    grammar = (Path(__file__).parent / "grammar.lark").read_text()
    return Lark(grammar, parser="lalr", postlex=_SpecIndenter(), propagate_positions=True, maybe_placeholders=False)


def _looks_like_path(spec: str) -> bool:
    """A one-line string that names a file or folder, ends in .ik, or has a path separator and no space
    (no spec text does: it starts with an input line)."""
    return "\n" not in spec and (spec.endswith(".ik") or os.path.exists(spec)
                                 or (("/" in spec or os.sep in spec) and " " not in spec.strip()))


def read_spec(spec) -> tuple[str, str]:
    """(text, origin) of a spec given as text or as a path to a file.

    Raises SpecError for a path that is missing, a folder, or not UTF-8 text."""
    if isinstance(spec, Path) or (isinstance(spec, str) and _looks_like_path(spec)):
        reason = {FileNotFoundError: "no such file", IsADirectoryError: "it is a folder, not a .ik file",
                  UnicodeDecodeError: "it is not UTF-8 text", PermissionError: "permission denied"}
        try:
            return Path(spec).read_text(encoding="utf-8"), str(spec)
        except tuple(reason) as e:
            raise SpecError(f"cannot read spec file {spec}: {reason[type(e)]}") from None
    if not isinstance(spec, str):
        raise SpecError(f"a spec is text, a path, or a Graph, not {type(spec).__name__}")
    return spec, "<text>"


def parse(spec, **overrides) -> Graph:
    """The Graph of a spec (text or path). `overrides` replace `let` values."""
    text, _ = read_spec(spec)
    lines = text.splitlines() or [""]
    _check_indentation(lines)
    try:
        tree = _lark().parse(text + "\n")
    except UnexpectedInput as e:
        raise _unclosed_parenthesis(e, lines) or _syntax_error(e, lines) from None
    except LarkError as e:  # e.g. a dedent lark's indenter cannot match
        raise SpecError(f"syntax error: {e}") from None
    return _Resolver(lines, overrides).program(tree)


# -- syntax errors ----------------------------------------------------------------

def _where(lines: list[str], line: int, column: int) -> Where:
    line = min(max(line, 1), len(lines))
    return Where(line, max(column, 1), lines[line - 1])


def _check_indentation(lines: list[str]) -> None:
    """Blocks open after a line ending in ':' and close by returning to an
    enclosing level; tabs are refused (ambiguous)."""
    stack, opens = [0], False
    for number, line in enumerate(lines, 1):
        body = line.lstrip(" \t")
        if not body or body.startswith("#"):
            continue
        indent = line[: len(line) - len(body)]
        if "\t" in indent:
            raise SpecError("indent with spaces, not tabs", _where(lines, number, 1))
        depth = len(indent)
        if opens != (depth > stack[-1]):
            message = "expected an indented block after ':'" if opens else "unexpected indentation"
            raise SpecError(message, _where(lines, number, depth + 1))
        if depth > stack[-1]:
            stack.append(depth)
        while depth < stack[-1]:
            stack.pop()
        if depth != stack[-1]:
            raise SpecError("this line's indentation matches no enclosing block", _where(lines, number, depth + 1))
        opens = _code(body).endswith(":")


def _code(line: str) -> str:
    """A line without its comment (a '#' outside double quotes)."""
    quoted = False
    for i, ch in enumerate(line):
        quoted ^= ch == '"'
        if ch == "#" and not quoted:
            return line[:i].rstrip()
    return line.rstrip()


def _syntax_error(e: UnexpectedInput, lines: list[str]) -> SpecError:
    line, column = getattr(e, "line", -1), getattr(e, "column", -1)
    if isinstance(e, UnexpectedCharacters):
        char = lines[line - 1][column - 1] if 0 < line <= len(lines) and 0 < column <= len(lines[line - 1]) else "?"
        hint = ("names (lets, ops, options) are ASCII letters, digits and _: write sigma, not \u03c3"
                if not char.isascii() else None)
        return SpecError(f"unexpected character {char!r}", _where(lines, line, column), hint)
    if isinstance(e, UnexpectedToken):
        token = e.token
        if token.type == "$END" or line < 1:
            return SpecError("unexpected end of spec", _where(lines, len(lines), len(lines[-1]) + 1))
        expected = sorted({FRIENDLY.get(t, _literal(t)) for t in e.expected})
        shown = token.value.strip() or FRIENDLY.get(token.type, token.type)
        if token.type == "_NL":
            shown = "end of line"
        hint = "expected " + ", ".join(expected[:6]) if expected else None
        return SpecError(f"unexpected {shown!r}", _where(lines, token.line, token.column), hint)
    if isinstance(e, UnexpectedEOF):
        return SpecError("unexpected end of spec", _where(lines, len(lines), len(lines[-1]) + 1))
    return SpecError(f"syntax error: {e}", _where(lines, line, column))


def _unclosed_parenthesis(e: UnexpectedInput, lines: list[str]) -> SpecError | None:
    """A '(' left open on an earlier line than the error: the error is there (a newline
    inside parentheses continues the line, so lark only notices later)."""
    line, column = getattr(e, "line", -1), getattr(e, "column", -1)
    if isinstance(e, UnexpectedToken) and e.token.type == "$END" or line < 1:
        line, column = len(lines) + 1, 1
    opened: list[tuple[int, int]] = []
    for number, text in enumerate(lines[: line - 1], 1):
        quoted = False
        for col, ch in enumerate(_code(text), 1):
            quoted ^= ch == '"'
            if quoted:
                continue
            if ch == "(":
                opened.append((number, col))
            elif ch == ")" and opened:
                opened.pop()
    if not opened:
        return None
    number, col = opened[-1]
    return SpecError("'(' is never closed", _where(lines, number, col), "close it with ')'")


def _literal(terminal: str) -> str:
    name = terminal.lower()
    return f"'{name}'" if name in KEYWORDS else terminal


# -- resolution ----------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Word:
    """A bare name that is not a defined number: an option like `same`."""

    text: str


@dataclasses.dataclass
class _Block:
    params: list[str]
    suite: Tree
    where: Where


class _Resolver:
    def __init__(self, lines: list[str], overrides: dict):
        self.lines = lines
        self.overrides = dict(overrides)
        self.used_overrides: set[str] = set()
        self.blocks: dict[str, _Block] = {}
        self.expanding: list[str] = []
        self.input = None
        self.parameterization = "ntk"
        self.lets: dict[str, float] = {}

    def at(self, item) -> Where:
        if isinstance(item, Token):
            return _where(self.lines, item.line, item.column)
        meta = item.meta
        return _where(self.lines, getattr(meta, "line", 1), getattr(meta, "column", 1))

    # -- statements ------------------------------------------------------------------
    def program(self, tree: Tree) -> Graph:
        layers = self.statements(tree.children, self.lets, top=True)
        unknown = set(self.overrides) - self.used_overrides
        if unknown:
            defined = [name for name in self.lets if name not in CONSTANTS]
            close = difflib.get_close_matches(next(iter(unknown)), defined, n=1) if len(unknown) == 1 else []
            hint = f"did you mean {close[0]!r}?" if close else f"the spec defines {', '.join(defined) or 'no lets'}"
            raise SpecError(f"no let named {', '.join(sorted(unknown))} to override", hint=hint)
        if self.input is None:
            raise SpecError("the spec has no input line", _where(self.lines, 1, 1), "start it with e.g. input 32x32x3")
        dims, where = self.input
        return build(layers, dims, self.parameterization, self.lets, where)

    def statements(self, stmts, scope: dict, top: bool = False) -> list:
        layers = []
        for stmt in stmts:
            layers.extend(self.statement(stmt, scope, top))
        return layers

    def statement(self, stmt: Tree, scope: dict, top: bool) -> list:
        kind, c = stmt.data, stmt.children
        if kind in ("input_stmt", "param_stmt", "let_stmt", "block_def") and not top:
            raise SpecError(f"{kind.split('_')[0].replace('param', 'parameterization')} belongs at the top level, "
                            "not inside a block", self.at(stmt))
        if self.input is None and kind not in ("input_stmt", "param_stmt", "let_stmt", "block_def"):
            raise SpecError("layers come after the input line", self.at(stmt), "start the spec with e.g. input 784")
        return getattr(self, kind)(stmt, c, scope)

    def input_stmt(self, stmt, c, scope):
        if self.input is not None:
            raise SpecError("a second input line", self.at(stmt))
        value = self.value(c[0], scope)
        dims = value if isinstance(value, tuple) else (self.integer(value, "the input size", c[0]),)
        self.input = (dims, self.at(stmt))
        return []

    def param_stmt(self, stmt, c, scope):
        name = str(c[0])
        if name not in ("ntk", "standard"):
            raise SpecError(f"unknown parameterization {name!r}", self.at(c[0]), "expected ntk or standard")
        self.parameterization = name
        return []

    def let_stmt(self, stmt, c, scope):
        name = str(c[0])
        if name in scope:
            raise SpecError(f"{name} is already defined", self.at(c[0]))
        if name in self.overrides:
            self.used_overrides.add(name)
            value = self.overrides[name]
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):  # numpy too
                raise SpecError(f"the override {name}={value!r} is not a finite number")
        else:
            value = self.number(c[1], scope)
        scope[name] = float(value)
        return []

    def block_def(self, stmt, c, scope):
        name = c[0]
        params = [str(t) for t in c[1:-1] if t.type == "NAME"]
        if str(name) in REGISTRY or str(name) in self.blocks:
            raise SpecError(f"block {name} is already defined" if str(name) in self.blocks
                            else f"block {name} would hide the op {name}", self.at(name))
        if len(set(params)) != len(params):
            raise SpecError(f"block {name} repeats a parameter name", self.at(name))
        self.blocks[str(name)] = _Block(params, c[-1], self.at(stmt))
        return []

    def repeat(self, stmt, c, scope):
        count = self.integer(self.number(c[0], scope), "a repeat count", c[0], positive=True)
        return [Repeat(count, *self.suite(c[1], scope), where=self.at(stmt))]

    def residual(self, stmt, c, scope):
        return [Residual(*self.suite(c[0], scope), where=self.at(stmt))]

    def parallel(self, stmt, c, scope):
        mode = str(c[0])
        if mode not in join_modes():
            raise SpecError(f"parallel blocks join by {' or '.join(join_modes())}, not {mode!r}", self.at(c[0]))
        branches = [self.suite(b.children[0], scope) for b in c[1:]]
        return [Parallel(mode, *branches, where=self.at(stmt))]

    def suite(self, suite: Tree, scope: dict) -> list:
        return self.statements(suite.children, scope)

    def op_stmt(self, stmt, c, scope):
        return self.call(c[0], c[1:], scope, stmt)

    def call_stmt(self, stmt, c, scope):
        return self.call(c[0], [a for a in c[1:] if isinstance(a, Tree)], scope, stmt)

    def call(self, name: Token, args: list, scope: dict, stmt) -> list:
        key = str(name)
        if key in self.blocks:
            return self.expand(key, args, scope, stmt)
        cls = REGISTRY.get(key)
        if cls is None or not cls.keyword or key == "input":
            candidates = [k for k, v in REGISTRY.items() if v.keyword and k != "input"] + list(self.blocks)
            close = difflib.get_close_matches(key, candidates, n=1)
            hint = f"did you mean {close[0]!r}?" if close else None
            if key.lower() in ACT_FORMULAS:
                hint = f'write it as a formula: act "{ACT_FORMULAS[key.lower()]}"'
            elif key in join_modes():
                hint = f"{key} joins branches: write `parallel {key}:`"
            elif key in KEYWORDS:
                hint = f"{key} has its own syntax"
            raise SpecError(f"unknown op {key!r}", self.at(name), hint)
        return [At(self.make_op(cls, args, scope, stmt), self.at(stmt))]

    def expand(self, key: str, args: list, scope: dict, stmt) -> list:
        block = self.blocks[key]
        if key in self.expanding:
            raise SpecError(f"block {key} uses itself", self.at(stmt))
        if len(self.expanding) > MAX_NESTING:
            raise SpecError("blocks nest too deeply", self.at(stmt))
        inner = dict(scope)
        bound = self.bind(key, block.params, args, scope, stmt)
        inner.update(bound)
        self.expanding.append(key)
        try:
            return self.statements(block.suite.children, inner)
        finally:
            self.expanding.pop()

    def bind(self, key: str, params: list[str], args: list, scope: dict, stmt) -> dict:
        bound = {}
        for i, arg in enumerate(args):
            if arg.data == "keyword":
                name, node = str(arg.children[0]), arg.children[1]
                if name not in params:
                    raise SpecError(f"block {key} has no parameter {name!r}", self.at(arg.children[0]),
                                    f"its parameters are {', '.join(params) or 'none'}")
            else:
                if i >= len(params):
                    raise SpecError(f"block {key} takes {len(params)} arguments", self.at(arg))
                name, node = params[i], arg.children[0]
            if name in bound:
                raise SpecError(f"{name} given twice", self.at(arg))
            bound[name] = self.number(node, scope)
        missing = [p for p in params if p not in bound]
        if missing:
            raise SpecError(f"block {key} needs {', '.join(missing)}", self.at(stmt),
                            f"call it as {key}({', '.join(params)}) with a number for each")
        return bound

    # -- op arguments ----------------------------------------------------------------
    def make_op(self, cls, args: list, scope: dict, stmt):
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values: dict = {}
        for arg in args:
            if arg.data == "keyword":
                token, node = arg.children
                name = str(token)
                if name not in fields:
                    close = difflib.get_close_matches(name, list(fields), n=1)
                    hint = f"did you mean {close[0]!r}?" if close else \
                        (f"{cls.name} takes {', '.join(fields)}" if fields else f"{cls.name} takes no arguments")
                    raise SpecError(f"unknown argument {name!r} for {cls.name}", self.at(token), hint)
                where = self.at(token)
            else:
                node = arg.children[0]
                where = self.at(arg)
                name = self.positional_field(cls, self.value(node, scope), where)
            if name in values:
                raise SpecError(f"{name} given twice", where)
            values[name] = (self.value(node, scope), where)
        kwargs = {name: self.coerce(cls, fields[name], v, w) for name, (v, w) in values.items()}
        missing = [f.name for f in fields.values()
                   if f.name not in kwargs and f.default is dataclasses.MISSING]
        if missing:
            raise SpecError(f"{cls.name} needs {', '.join(missing)}", self.at(stmt))
        try:
            return cls(**kwargs)
        except SpecError as e:
            texts = [w for v, w in values.values() if isinstance(v, str) and not isinstance(v, _Word)]
            if hasattr(e, "placed") and texts:  # an error inside a quoted formula: point into it
                raise e.placed(texts[0].line, texts[0].column + 1, texts[0].text) from None
            raise e.at(self.at(stmt)) from None

    def positional_field(self, cls, value, where) -> str:
        kind = ("dims" if isinstance(value, tuple) else "word" if isinstance(value, _Word)
                else "string" if isinstance(value, str) else "int" if float(value).is_integer() else "number")
        options = cls.positional
        field = options.get(kind) or (options.get("number") if kind == "int" else None)
        if field is None:
            raise SpecError(f"{cls.name} takes no positional {kind} argument", where,
                            "name it, e.g. w_std=1.5" if kind in ("int", "number") else None)
        return field

    def coerce(self, cls, field, value, where):
        kind = str(field.type)
        if isinstance(value, _Word):
            if "str" in kind:
                return value.text.lower()
            raise SpecError(f"undefined name {value.text!r}", where, self._name_hint(value.text))
        if isinstance(value, tuple):
            if "tuple" in kind:
                return value
            raise SpecError(f"{field.name} of {cls.name} is a number, not dimensions", where)
        if isinstance(value, str):
            if "str" in kind:
                return value
            raise SpecError(f"{field.name} of {cls.name} is not text", where)
        if "str" in kind and "float" not in kind and "int" not in kind:
            raise SpecError(f"{field.name} of {cls.name} is a word, not a number", where)
        if kind.startswith("float"):
            return float(value)
        integer = self.integer(value, f"{field.name} of {cls.name}", where)
        return integer if "| int" in kind or kind.startswith("int") else (integer,)

    def integer(self, value, what: str, where, positive: bool = False) -> int:
        if isinstance(where, (Token, Tree)):
            where = self.at(where)
        if isinstance(value, (tuple, _Word, str)) or not float(value).is_integer():
            raise SpecError(f"{what} must be an integer, got {_show(value)}", where)
        if positive and value < 1:
            raise SpecError(f"{what} must be positive, got {_show(value)}", where)
        return int(value)

    # -- values and arithmetic ---------------------------------------------------------
    def value(self, node, scope: dict):
        if isinstance(node, Tree) and node.data == "dims":
            return tuple(int(d) for d in str(node.children[0]).split("x"))
        if isinstance(node, Tree) and node.data == "string":
            return str(node.children[0])[1:-1]
        if isinstance(node, Tree) and node.data == "name" and str(node.children[0]) not in scope \
                and str(node.children[0]) not in CONSTANTS:
            return _Word(str(node.children[0]))
        return self.number(node, scope)

    def number(self, node, scope: dict, depth: int = 0) -> float:
        if depth > MAX_NESTING:
            raise SpecError("expression nests too deeply", self.at(node))
        kind = node.data
        if kind == "number":
            value = float(node.children[0])
            if not math.isfinite(value):
                raise SpecError(f"number {str(node.children[0])!r} is out of range (over about 1.8e308)",
                                self.at(node))
            return value
        if kind == "name":
            token = node.children[0]
            if str(token) in scope:
                return scope[str(token)]
            if str(token) in CONSTANTS:
                return CONSTANTS[str(token)]
            raise SpecError(f"undefined name {str(token)!r}", self.at(token), self._name_hint(str(token), scope))
        if kind in ("dims", "string"):
            raise SpecError("expected a number", self.at(node))
        args = [self.number(ch, scope, depth + 1) for ch in node.children if isinstance(ch, Tree)]
        try:
            result = self._apply(kind, node, args)
        except OverflowError:
            raise SpecError("arithmetic error: the result is out of range (over about 1.8e308)", self.at(node)) from None
        except ZeroDivisionError:
            raise SpecError("arithmetic error: division by zero", self.at(node)) from None
        except ValueError:
            what = str(node.children[0]) if kind == "func" else kind
            raise SpecError(f"arithmetic error: {what} is not defined at {', '.join(f'{a:g}' for a in args)}",
                            self.at(node)) from None
        if not isinstance(result, float) or not math.isfinite(result):
            shown = "a complex number (a negative number to a fractional power)" if isinstance(result, complex) \
                else repr(result)
            raise SpecError(f"arithmetic gives {shown}, not a finite real number", self.at(node))
        return result

    def _apply(self, kind: str, node: Tree, args: list[float]) -> float:
        if kind == "func":
            name = str(node.children[0])
            if name not in FUNCTIONS:
                raise SpecError(f"unknown function {name!r}", self.at(node.children[0]),
                                f"known: {', '.join(FUNCTIONS)}")
            return float(FUNCTIONS[name](args[0]))
        a = args[0]
        ops = {"neg": lambda: -a, "add": lambda: a + args[1], "sub": lambda: a - args[1],
               "mul": lambda: a * args[1], "div": lambda: a / args[1], "pow": lambda: a ** args[1],
               "atom": lambda: a, "factor": lambda: a, "power": lambda: a}
        if kind not in ops:
            raise SpecError(f"unexpected {kind}", self.at(node))
        return ops[kind]()

    def _name_hint(self, name: str, scope: dict | None = None) -> str | None:
        names = list((scope or self.lets).keys()) + list(CONSTANTS)
        close = difflib.get_close_matches(name, names, n=1)
        return f"did you mean {close[0]!r}?" if close else None


def _show(value) -> str:
    if isinstance(value, _Word):
        return value.text
    if isinstance(value, tuple):
        return "x".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else repr(value)
