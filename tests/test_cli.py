"""The `infkernel` command line: options that change results, messages a user sees, and misuse."""
from __future__ import annotations

import numpy as np
import pytest
from closed_forms import relu_fc_kernels

from infkernel.cli import main
from infkernel.sklearn import DEFAULT_SPEC


@pytest.fixture
def fc_spec(tmp_path):
    path = tmp_path / "fc.ik"
    path.write_text(DEFAULT_SPEC.replace("let d = 1", "let d = 5"))
    return path


@pytest.mark.parametrize("depth", [1, 3])
def test_set_overrides_a_let_as_the_closed_form_says(fc_spec, tmp_path, capsys, depth):
    """--set depth=N changes the kernel to the closed-form kernel of depth N (the spec says 2)."""
    x = np.random.default_rng(0).normal(size=(6, 5))
    np.save(tmp_path / "x.npy", x)
    argv = ["kernel", str(fc_spec), "--x1", str(tmp_path / "x.npy"), "--out", str(tmp_path / "K.npz"), "--x64",
            "--quiet", "--set", f"depth={depth}", "--set", "d=5"]
    assert main(argv) == 0
    k = np.load(tmp_path / "K.npz")
    nngp, ntk = relu_fc_kernels(x, depth=depth)
    np.testing.assert_allclose(k["nngp"], nngp, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(k["ntk"], ntk, rtol=1e-12, atol=1e-14)
    assert np.abs(ntk - relu_fc_kernels(x, depth=2)[1]).max() > 1e-2 * np.abs(ntk).max()


REPEATS = [
    "input 4\nrepeat 4:\n    dense w_std=1.3\n    relu\ndense\n",
    "input 4\ndense\nrepeat 3:\n    residual:\n        relu\n        dense w_std=0.5\n    repeat 2:\n        erf\n"
    "        dense\ndense\n",
    "input 6x6x1\nrepeat 3:\n    conv 3x3 same\n    relu\navgpool 2x2\nrepeat 2:\n    conv 3x3 same\n    relu\ngap\ndense\n",
]


def _covered(text: str) -> tuple[set, set]:
    """(node ids a text shows or covers by a stated range 'nodes A-B', node ids it refers to)."""
    import re
    shown = {int(m) for m in re.findall(r"^\s*(?:node )?(\d+)[: ]", text, re.M)}
    for a, b in re.findall(r"nodes (\d+)-(\d+)", text):
        shown |= set(range(int(a), int(b) + 1))
    referred = {int(m) for m in re.findall(r"(?:Sigma|Theta|q'?)_(\d+)", text)}
    for line in text.splitlines():  # the inputs column of `check`
        cells = line.split()
        if cells and cells[0].isdigit() and len(cells) >= 3 and re.fullmatch(r"[\d,]+", cells[-2]):
            referred |= {int(i) for i in cells[-2].split(",")}
    return shown, referred


@pytest.mark.parametrize("spec", REPEATS)
@pytest.mark.parametrize("command", ["check", "explain"])
def test_node_numbers_after_a_repeat_refer_to_nodes_shown(tmp_path, capsys, spec, command):
    (tmp_path / "net.ik").write_text(spec)
    assert main([command, str(tmp_path / "net.ik")]) == 0
    text = capsys.readouterr().out
    shown, referred = _covered(text)
    assert referred and referred <= shown, (sorted(referred - shown), text)


def test_version_and_top_level_help(capsys):
    from infkernel import __version__

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"infkernel {__version__}"
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "NNGP and NTK" in text and "examples:" in text
    assert "infkernel/commands" not in text and "add_arguments" not in text  # no source layout


def test_set_with_a_typo_suggests_the_let(fc_spec, capsys):
    assert main(["check", str(fc_spec), "--set", "dpeth=3"]) == 2
    assert "no let named dpeth to override, did you mean 'depth'?" in capsys.readouterr().err


def test_kernel_names_both_input_files(fc_spec, tmp_path, capsys):
    np.save(tmp_path / "a.npy", np.ones((3, 5)))
    np.save(tmp_path / "b.npy", np.ones((2, 5)))
    np.save(tmp_path / "bad.npy", np.ones((2, 6)))
    base = ["kernel", str(fc_spec), "--x1", str(tmp_path / "a.npy"), "--out", str(tmp_path / "K.npz"), "--quiet"]
    assert main(base + ["--x2", str(tmp_path / "b.npy")]) == 0
    out = capsys.readouterr().out
    assert "3x2" in out and "a.npy (rows) and" in out and "b.npy (columns)" in out
    assert main(base + ["--x2", str(tmp_path / "bad.npy")]) == 2
    assert f"--x2 {tmp_path / 'bad.npy'} has shape (2, 6)" in capsys.readouterr().err


MALFORMED = [
    "input 4\ndense w_std=\ndense\n", "input 4\ndense w_std=1 w_std=2\n", "input 4\nrepeat -1:\n    dense\ndense\n",
    "input 0\ndense\n", "input 4x0\nflatten\ndense\n", "input 4\ndense 0\n", "input 8x8x1\nconv 9x9\nflatten\ndense\n",
    "input 8x8x1\nconv 3x3 stride=0\nflatten\ndense\n", "input 4\ndense w_std=log(-1)\n", "input 4\nact \"\"\ndense\n",
    "input 4\nact \"x +\"\ndense\n", "input 4\nact tanh\ndense\n", "input 4\nact \"y\"\ndense\n",
    "input 4\nlet a = b\ndense\n", "input 4\nblock f(a):\n    dense w_std=a\nf(1, 2)\ndense\n",
    "input 4\nparallel foo:\n    branch:\n        dense\ndense\n", "input 4\nparallel sum:\n    dense\ndense\n",
    "input 4\nleaky_relu alpha=x\ndense\n", "", "dense\n", "input 4\ninput 4\ndense\n", "input 4\ndense w_std=1,\n",
    "input 4\nrelu(\n", "input 4\nabrelu a=1 c=2\n", "input 4\nact \"x**100\"\ndense\n", "\x00\x01",
]


@pytest.mark.parametrize("text", MALFORMED)
def test_malformed_specs_are_spec_errors_on_the_command_line(tmp_path, capsys, text):
    """Typos end in one `error:` line with the spot, exit status 2, never a traceback from lark or JAX."""
    (tmp_path / "bad.ik").write_text(text)
    assert main(["check", str(tmp_path / "bad.ik")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("infkernel check: error: ") and "Traceback" not in err


@pytest.mark.parametrize("argv", [
    ["kernel", "nope.ik"], ["kernel", "{spec}", "--x1", "{dir}/s.npy"], ["kernel", "{spec}", "--batch-size", "0"],
    ["kernel", "{spec}", "--memory", "-5"], ["kernel", "{spec}", "--get", "ntk,xyz"], ["mc", "{spec}", "--width", "0"],
    ["mc", "{spec}", "--x1", "{dir}/s.npy"], ["fit", "{spec}", "--data", "nonsense"],
    ["fit", "{spec}", "--data", "digits", "--cv", "1"], ["explain", "{spec}", "--set", "depth=nan"],
    ["check", "{dir}"],
])
def test_command_line_misuse_is_one_error_line(fc_spec, tmp_path, capsys, argv):
    np.save(tmp_path / "s.npy", np.array(["a", "b"]))
    argv = [a.format(spec=fc_spec, dir=tmp_path) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "error: " in err and "Traceback" not in err


def test_fit_says_which_task_and_takes_task(tmp_path, capsys):
    """Whole-number targets (amounts like 151) are classes unless --task regression; the choice is printed,
    and with --task regression the MSE is that of kernel regression on the numbers (closed-form oracle)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    y = np.rint(150 + 30 * np.sin(x @ np.array([1.0, 0.5, -0.3]))).astype(np.int64)
    np.savez(tmp_path / "amounts.npz", x_train=x[:45], y_train=y[:45], x_test=x[45:], y_test=y[45:])
    (tmp_path / "fc.ik").write_text(DEFAULT_SPEC)
    argv = ["fit", str(tmp_path / "fc.ik"), "--data", str(tmp_path / "amounts.npz"), "--ridge", "0.01"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "task      classification: the targets are whole numbers" in out and "--task regression" in out
    assert "accuracy" in out
    assert main(argv + ["--task", "regression"]) == 0
    out = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines())
    assert out["task"] == "regression (--task regression)"
    k, kx = relu_fc_kernels(x[:45])[1], relu_fc_kernels(x[45:], x[:45])[1]
    mean = kx @ np.linalg.solve(k + 0.01 * np.eye(45), y[:45].astype(float))
    assert float(out["mse"]) == pytest.approx(np.mean((mean - y[45:]) ** 2), rel=2e-5)
    np.savez(tmp_path / "real.npz", x_train=x[:45], y_train=y[:45] + 0.5, x_test=x[45:], y_test=y[45:] + 0.5)
    assert main(["fit", str(tmp_path / "fc.ik"), "--data", str(tmp_path / "real.npz"), "--task", "classification"]) == 2
    assert "whole-number" in capsys.readouterr().err


HEAVY = 'input 4\nrepeat 3:\n    dense w_std=1.5 b_std=0.05\n    act "x*erf(x) + 0.1*x**3"\ndense\n'
ERF = "input 4\ndense w_std=1.5 b_std=0.1\nerf\ndense\n"


def _verdicts(out: str) -> list[str]:
    return [line.split(":")[0].strip().split(" within")[0] for line in out.splitlines()
            if line.strip().startswith(("agrees", "NOT CONVERGED", "DISAGREES", "TOO NOISY"))]


@pytest.mark.parametrize("spec, expected", [(HEAVY, {"NOT CONVERGED"}), (ERF, {"agrees", "TOO NOISY to check"})])
def test_mc_says_whether_its_estimate_converged(tmp_path, capsys, spec, expected):
    """The README's heavy-tailed activation at depth 3 is far from converged at small widths: `mc` says so
    (its error changes with the width by far more than 10 %), while an erf net is not called unconverged
    (with 16 networks its check is loose: 'agrees' or 'too noisy')."""
    (tmp_path / "net.ik").write_text(spec)
    assert main(["mc", str(tmp_path / "net.ik"), "--width", "64", "--samples", "16", "--n", "2", "--quiet"]) == 0
    verdicts = _verdicts(capsys.readouterr().out)
    assert len(verdicts) == 2 and set(verdicts) <= expected, verdicts


def test_mc_verdict_flags_a_wrong_rule():
    """A kernel 2x off, by an error that does not move with the width, is a disagreement, not slow convergence."""
    from infkernel.commands.mc import verdict
    from infkernel.kernel import Kernel
    from infkernel.testing import compare_monte_carlo

    import infkernel as ik

    def wrong(graph, a, b, get):
        k = ik.compile(graph)(a, b, get=get, dtype="float64")
        return Kernel(*(None if v is None else 2.0 * v for v in k))

    x = np.random.default_rng(0).normal(size=(2, 4))
    comparisons = compare_monte_carlo(ERF, x, width=64, n_samples=16, analytic=wrong)
    assert [verdict(c).split(":")[0] for c in comparisons] == ["DISAGREES", "DISAGREES"]


def test_monte_carlo_progress_bar(capsys):
    from infkernel.montecarlo import monte_carlo

    x = np.random.default_rng(0).normal(size=(2, 4))
    monte_carlo(ERF, x, width=8, n_samples=3, progress=True)
    assert "Monte Carlo, width 8" in capsys.readouterr().err
    monte_carlo(ERF, x, width=8, n_samples=3, progress=False)
    assert "Monte Carlo" not in capsys.readouterr().err


def test_warnings_are_printed_as_one_line_without_the_source(capsys):
    """A library warning during a command reads `infkernel CMD: warning (Class): message`, not Python's
    file:line format with the offending source line."""
    import warnings

    from infkernel.cli import main
    from infkernel.predict.precision import PrecisionWarning

    class Fake:
        @staticmethod
        def run(args):
            warnings.warn("the estimate is 0.03", PrecisionWarning)
            return 0

    import infkernel.cli as cli
    original = cli._module
    cli._module = lambda name: Fake if name == "check" else original(name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            Fake.add_arguments = staticmethod(lambda parser: parser.add_argument("spec"))
            assert main(["check", "x.ik"]) == 0
    finally:
        cli._module = original
    err = capsys.readouterr().err
    assert err == "infkernel check: warning (PrecisionWarning): the estimate is 0.03\n"
