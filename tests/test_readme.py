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
