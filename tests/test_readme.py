"""The README's Python examples run as written, in order (they share a namespace)."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_python_examples_run(monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert len(blocks) >= 2
    monkeypatch.chdir(ROOT)  # the examples name specs/ relative to the checkout
    namespace = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)  # our own documentation, not user data
    assert namespace["clf"].score(namespace["digits"].x_test, namespace["digits"].y_test) > 0.8


def test_readme_explain_output_is_what_explain_prints(tmp_path, capsys):
    """The README's `infkernel explain` block is the output of explain on the spec block above it:
    each line is printed as shown, in order; a line ending in ' ...' is a prefix, a line '...' skips."""
    from infkernel.cli import main

    text = (ROOT / "README.md").read_text()
    spec, shown = re.search(r"```\n(input 784\n.*?)```.*?```\n\$ infkernel explain .*?\n(.*?)```", text, re.S).groups()
    (tmp_path / "act.ik").write_text(spec)
    assert main(["explain", str(tmp_path / "act.ik")]) == 0
    printed = capsys.readouterr().out.splitlines()
    at, skipping = 0, False
    for line in shown.splitlines():
        if line == "...":
            skipping = True
            continue
        prefix = line[:-4] if line.endswith(" ...") else None
        matches = lambda p: p.startswith(prefix) if prefix else p == line  # noqa: E731
        while skipping and at < len(printed) and not matches(printed[at]):
            at += 1
        assert at < len(printed) and matches(printed[at]), \
            f"README line {line!r} is not what explain prints: {printed[at] if at < len(printed) else 'nothing'!r}"
        at, skipping = at + 1, False
    assert at == len(printed), "explain prints more than the README shows, without a '...'"


def test_readme_op_table_lists_every_op():
    """Every op a spec can name has a row in the README's op table (or, for joins, a `parallel NAME:` mention)."""
    from infkernel.ops import REGISTRY
    text = (ROOT / "README.md").read_text()
    table = "\n".join(line for line in text.splitlines() if line.startswith("  | `"))
    missing = [name for name, cls in REGISTRY.items() if cls.keyword and name != "input" and f"`{name}`" not in table]
    missing += [name for name, cls in REGISTRY.items() if cls.arity == -1 and f"`parallel {name}:`" not in text]
    assert not missing, f"ops missing from the README's op table: {missing}"
