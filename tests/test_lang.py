"""The language: specs parse, errors point at the spot, corruptions never crash."""
import builtins
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

import infkernel as ik
from infkernel import SpecError

SPECS = sorted((Path(__file__).parents[1] / "specs").glob("*.ik"))


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_every_bundled_spec_parses_and_summarises(path):
    graph = ik.parse(path)
    summary = graph.summary()
    assert graph.output.shape.rank == 0
    assert f"output {graph.output.shape}" in summary
    assert summary.count("\n") >= 4


def test_bundled_specs_cite_their_source():
    for path in SPECS:
        header = path.read_text().split("input")[0]
        assert header.startswith("#") and any(ch.isdigit() for ch in header), path


BASELINE = """\
# Arora et al. 2019 CNTK with global average pooling
input 32x32x3                 # one example, channels last
parameterization ntk
let depth = 5                 # a named number
let s = sqrt(2)               # arithmetic

repeat depth:
    conv 3x3 same w_std=s b_std=0     # padding
    relu                              # stride=2 on conv and avgpool
gap                                   # global average pool
dense w_std=1
"""


def test_baseline_of_the_design_parses_to_the_right_graph():
    g = ik.parse(BASELINE)
    ops = [n.op.name for n in g.nodes]
    assert ops == ["input"] + ["conv", "relu"] * 5 + ["gap", "dense"]
    conv = g.nodes[1].op
    assert conv.window == (3, 3) and conv.padding == "same" and conv.w_std == pytest.approx(2 ** 0.5)
    assert conv.b_std == 0.0
    assert g.nodes[1].shape.spatial == (32, 32)


def test_overrides_replace_lets():
    assert len(ik.parse(BASELINE, depth=2).nodes) == 1 + 4 + 2
    with pytest.raises(SpecError, match="no let named dpeth"):
        ik.parse(BASELINE, dpeth=2)


def test_strides_padding_and_positional_forms():
    g = ik.parse("input 9x7x2\nconv 3x3 same stride=2 w_std=1\navgpool 2x1 stride=2x1\nconv 2 valid\n"
                 .replace("conv 2 valid", "conv 2x2 valid") + "relu\nflatten\ndense 10\n")
    shapes = [n.shape.spatial for n in g.nodes[:4]]
    assert shapes == [(9, 7), (5, 4), (2, 4), (1, 3)]
    assert g.output.shape.channels == 10


def test_arithmetic():
    g = ik.parse("input 4\nlet a = 2 ** 3 - 6 / (1 + 2)\ndense w_std=-a + 2 * sqrt(4) b_std=a / 4\n")
    assert g.nodes[1].op.w_std == pytest.approx(-6 + 4)
    assert g.nodes[1].op.b_std == pytest.approx(1.5)


def test_named_blocks_with_parameters():
    text = """\
input 8
block mlp(w, b):
    dense w_std=w b_std=b
    relu
block res(w):
    residual:
        mlp(w, 0.1)
        dense w_std=w
dense
res(1.5)
res(w=2)
"""
    g = ik.parse(text)
    dense = [n.op for n in g.nodes if n.op.name == "dense"]
    assert [d.w_std for d in dense] == [1.0, 1.5, 1.5, 2.0, 2.0]
    assert dense[1].b_std == 0.1
    assert sum(n.op.name == "sum" for n in g.nodes) == 2


def test_parallel_blocks():
    text = """\
input 6x6x2
conv 3x3 same
parallel concat:
    branch:
        conv 1x1 width=4
    branch:
        conv 3x3 same width=12
        relu
        conv 1x1 width=12
parallel sum:
    branch:
        conv 1x1
    branch:
        relu
gap
dense
"""
    g = ik.parse(text)
    concat = next(n for n in g.nodes if n.op.name == "concat")
    assert concat.shape.channels == 16 and len(concat.inputs) == 2


def test_python_builder_gives_the_same_graph():
    text = "input 8x8x3\nrepeat 2:\n    conv 3x3 same w_std=1.5\n    relu\nresidual:\n    conv 1x1\n    relu\n    conv 3x3 same\ngap\ndense\n"
    built = ik.serial(ik.Repeat(2, ik.Conv((3, 3), padding="same", w_std=1.5), ik.Relu()),
                      ik.Residual(ik.Conv((1, 1)), ik.Relu(), ik.Conv((3, 3), "same")), ik.Gap(), ik.Dense(),
                      input_shape=(8, 8, 3))
    parsed = ik.parse(text)
    assert [(n.op, n.inputs, n.shape, n.scope) for n in built.nodes] == \
        [(n.op, n.inputs, n.shape, n.scope) for n in parsed.nodes]


ERRORS = [
    ("input 4\nrleu\n", "unknown op 'rleu'", 2, 1, "did you mean 'relu'"),
    ("input 4\ndense w_sdt=1\n", "unknown argument 'w_sdt'", 2, 7, "did you mean 'w_std'"),
    ("input 4\nabrelu a=1\n", "abrelu needs b", 2, 1, None),
    ("input 4\ndense width=2.5\n", "must be an integer", 2, 7, None),
    ("input 4\ndense w_std=same\n", "undefined name 'same'", 2, 7, None),
    ("input 4\nlet depth = 2\nrepeat dpeth:\n    relu\n", "undefined name 'dpeth'", 3, 8, "did you mean 'depth'"),
    ("input 4\nrepeat 0:\n    relu\n", "must be positive", 2, 8, None),
    ("input 4\nrepeat 2.5:\n    relu\n", "must be an integer", 2, 8, None),
    ("input 784\nconv 3x3\n", "conv needs an input with spatial axes", 2, 1, None),
    ("input 8x8x3\nconv 3\n", "1-D conv window", 2, 1, None),
    ("input 8x8x3\nresidual:\n    conv 3x3\n", "residual branch changes the shape", 2, 1, None),
    ("input 8x8x3\nparallel concat:\n    branch:\n        conv 3x3\n    branch:\n        identity\n",
     "cannot concatenate", 2, 1, None),
    ("input 8\nparameterization standard\ndense w_std=1\n", "width=N under the standard", 3, 1, None),
    ("input 8\ndense w_std=(1\n", "'(' is never closed", 2, 13, None),
    ("input 8\ndense w_std=sqrt(2\nrelu\ndense\n", "'(' is never closed", 2, 17, "close it"),
    ("input 8\nrelu\ndense b_std=(1 + sqrt(2)", "'(' is never closed", 3, 13, None),
    ("input 8\ndense w_std=1e400\n", "out of range", 2, 13, None),
    ("input 8\ntanh\n", "unknown op 'tanh'", 2, 1, 'act "tanh(x)"'),
    ("input 8\nsigmoid\n", "unknown op 'sigmoid'", 2, 1, 'act "sigmoid(x)"'),
    ("input 8\nsoftplus\n", "unknown op 'softplus'", 2, 1, 'act "softplus(x)"'),
    ("input 8\nswish\n", "unknown op 'swish'", 2, 1, 'act "x*sigmoid(x)"'),
    ("input 8\nrelu\n  relu\n", "unexpected indentation", 3, 3, None),
    ("input 8\nrepeat 2:\nrelu\n", "expected an indented block", 3, 1, None),
    ("input 8\nrepeat 2:\n    relu\n  relu\n", "indentation matches no enclosing block", 4, 3, None),
    ("input 8\nrelu $\n", "unexpected character '$'", 2, 6, None),
    ("input 8\nlet a = 1 / 0\n", "arithmetic error", 2, 9, None),
    ("input 8\nlet a = 10 ** 10 ** 10\n", "arithmetic error", 2, None, None),
    ("input 8\nsum\n", "unknown op 'sum'", 2, 1, "parallel sum"),
    ("relu\n", "layers come after the input line", 1, 1, None),
    ("input 8\nparameterization mean_field\n", "unknown parameterization", 2, 18, None),
    ("input 8\nconv 3x3 sam\n", None, 2, None, None),
    ("input 8x8x2\nconv 3x3 sideways\n", "unknown padding", 2, 1, None),
    ("input 8\ndense\nparallel sum:\n    branch:\n        relu\n    branch:\n        erf\n", "do not end in a dense", 3, 1, None),
    ("input 8\ndense\nrelu\nerf\n", "needs Gaussian pre-activations", 4, 1, None),
    ("input 8\ndense\nparallel sum:\n    branch:\n        identity\n    branch:\n        identity\n",
     "same dense or conv layer", 3, 1, None),
    ("input 8\ndense\nrelu\nlayernorm\n", "centred input", 4, 1, None),
    ("input 8\nblock b:\n    b\nb\n", "uses itself", 3, 5, None),
]


@pytest.mark.parametrize("text, message, line, column, hint", ERRORS)
def test_errors_point_at_the_spot(text, message, line, column, hint):
    with pytest.raises(SpecError) as info:
        ik.parse(text)
    e = info.value
    if message:
        assert message in str(e)
    assert e.line == line
    if column is not None:
        assert e.column == column
    if hint:
        assert hint in str(e)
    rendered = str(e).splitlines()
    assert rendered[1].strip() == text.splitlines()[line - 1].strip()
    assert rendered[2].strip() == "^"


def test_spec_text_never_reaches_eval(monkeypatch):
    import sympy

    def forbidden(*args, **kwargs):
        raise AssertionError("spec text reached an evaluator")

    for module, name in [(builtins, "eval"), (builtins, "exec"), (sympy, "sympify"), (sympy, "parse_expr")]:
        monkeypatch.setattr(module, name, forbidden)
    for path in SPECS:
        ik.parse(path)
    with pytest.raises(SpecError):
        ik.parse("input 8\nlet a = __import__('os')\n")


def test_cli_check_prints_summary_or_error():
    run = lambda *a: subprocess.run([sys.executable, "-m", "infkernel", *a], capture_output=True, text=True)
    ok = run("check", str(SPECS[0]), "--set", "depth=2")
    assert ok.returncode == 0 and "output" in ok.stdout
    bad = run("check", "-")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    typo = run("check", str(SPECS[0]), "--set", "depth")
    assert typo.returncode == 2 and "NAME=NUMBER" in typo.stderr


# -- random specs and their corruptions ---------------------------------------------

ACTS = ["relu", "erf", "gelu", "identity", "leaky_relu alpha=0.2", "abrelu a=-0.5 b=1", "sin a=1 b=2 c=0.1"]


@st.composite
def statements(draw, depth=0):
    kind = draw(st.sampled_from(["conv", "act", "repeat", "residual", "parallel", "block"] if depth < 2
                                else ["conv", "act"]))
    pad = "    " * depth
    if kind == "conv":
        w = draw(st.sampled_from(["1", "s", "sqrt(2)", "1.5 * s", "(1 + s) / 2"]))
        return [f"{pad}conv {draw(st.sampled_from(['3x3 same', '1x1', '3x3 circular']))} w_std={w} b_std=0.1"]
    if kind == "act":  # an activation needs Gaussian pre-activations: its own conv first
        return [f"{pad}conv 1x1", f"{pad}{draw(st.sampled_from(ACTS))}"]
    if kind == "block":
        return [f"{pad}unit({draw(st.sampled_from(['1', 's', '2 * s']))})"]
    body = lambda d: [line for _ in range(draw(st.integers(1, 2))) for line in draw(statements(d))]
    if kind == "repeat":
        return [f"{pad}repeat {draw(st.sampled_from(['2', 'depth', 'depth + 1']))}:", *body(depth + 1)]
    if kind == "residual":
        return [f"{pad}residual:", *body(depth + 1), f"{pad}    conv 3x3 same"]
    mode = "sum" if depth else draw(st.sampled_from(["sum", "concat"]))  # concat doubles the width
    tail = [f"{pad}        conv 1x1"] if mode == "sum" else []
    return [f"{pad}parallel {mode}:", f"{pad}    branch:", *body(depth + 2), *tail,
            f"{pad}    branch:", f"{pad}        conv 3x3 same # comment", *[]]


@st.composite
def specs(draw):
    lines = ["# a random spec", "input 6x5x2", f"parameterization ntk", "let depth = 2", "let s = sqrt(2)",
             "block unit(w):", "    conv 3x3 same w_std=w", "    relu", "conv 3x3 same"]
    for _ in range(draw(st.integers(1, 3))):
        lines += draw(statements())
    lines += [draw(st.sampled_from(["gap", "flatten", "avgpool 2x2 same\nflatten"])), "dense w_std=1"]
    return "\n".join(lines) + "\n"


@given(specs())
def test_random_valid_specs_parse(text):
    graph = ik.parse(text)
    assert graph.output.shape.rank == 0


BAD_NUMBERS = ["1e999", "-3", "2.5", "0x3", "3x", "nan", "0", "1..2", "()", "**", "1/0"]


@given(specs(), st.data())
def test_corrupted_specs_raise_only_spec_errors(text, data):
    lines = text.splitlines()
    tokens = [(i, j) for i, line in enumerate(lines) for j, _ in enumerate(line.split(" "))]
    kind = data.draw(st.sampled_from(["delete", "duplicate", "swap", "indent", "number", "truncate"]))
    i, j = data.draw(st.sampled_from(tokens))
    words = lines[i].split(" ")
    if kind == "delete":
        del words[j]
    elif kind == "duplicate":
        words.insert(j, words[j])
    elif kind == "swap" and j + 1 < len(words):
        words[j], words[j + 1] = words[j + 1], words[j]
    elif kind == "number":
        words[j] = data.draw(st.sampled_from(BAD_NUMBERS))
    lines[i] = " ".join(words)
    if kind == "indent":
        lines[i] = data.draw(st.sampled_from(["  ", " ", "\t", "        "])) + lines[i]
    corrupted = "\n".join(lines[: i + 1] if kind == "truncate" else lines)
    try:
        ik.parse(corrupted)
    except SpecError as e:
        assert e.where is None or 1 <= e.line <= len(corrupted.splitlines()) + 1
