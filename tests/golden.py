"""The reference kernels (neural-tangents 0.6.5, float64), copied from ../shared/golden and
../shared/golden-v2 into tests/data so that a bare clone runs the suite, and their layer lists
written as spec text."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from infkernel.ops import REGISTRY, Windowed

DATA = Path(__file__).resolve().parent / "data"
GOLDEN = Path(os.environ.get("INFKERNEL_GOLDEN", DATA / "golden"))
GOLDEN_V2 = Path(os.environ.get("INFKERNEL_GOLDEN_V2", DATA / "golden-v2"))
ATTENTION = DATA / "attention"  # attention beyond golden-v2 (see its README)


def cases(folder: Path = GOLDEN) -> list[dict]:
    """The cases of one reference set, each remembering the folder it came from."""
    return [{**case, "_folder": str(folder)} for case in json.loads((folder / "cases.json").read_text())]


def load(case: dict) -> dict:
    with np.load(Path(case.get("_folder", GOLDEN)) / case["file"]) as data:
        return {k: data[k] for k in data.files}


def _dims(values) -> str:
    return "x".join(str(v) for v in values)


def _num(v) -> str:
    return repr(float(v))


# neural-tangents activations that infkernel writes as `act` formulas (README of golden-v2)
FORMULAS = {
    "abs": lambda l: "abs(x)",
    "exp": lambda l: f"{_num(l['a'])}*exp({_num(l['b'])}*x)",
    "gaussian": lambda l: f"{_num(l['a'])}*exp({_num(l['b'])}*x**2)",
    "cos": lambda l: f"{_num(l['a'])}*cos({_num(l['b'])}*x + {_num(l['c'])})",
    "monomial": lambda l: f"x**{int(l['degree'])}",
    "polynomial": lambda l: " + ".join(f"{_num(c)}*x**{i}" for i, c in enumerate(l["coef"])),
}


def op_for(layer_name: str) -> str:
    """The infkernel op of a layer-list entry: the op whose `golden_name` (or name) it is."""
    for name, cls in REGISTRY.items():
        if (cls.golden_name or name) == layer_name:
            return name
    raise KeyError(f"no op for the layer-list entry {layer_name!r}")


def _value(v) -> str:
    if isinstance(v, (list, tuple)):
        return _dims(v)
    if isinstance(v, str):
        return v.lower()
    return repr(v)


def _layer(layer: dict, indent: str) -> list[str]:
    """One layer-list entry as spec lines, generically: keys lower-cased (W_std -> w_std),
    strides -> stride, lists as dimensions; blocks as `residual:` / `parallel NAME:`."""
    kind = layer["op"]
    if kind == "residual":
        lines = [indent + "residual:"]
        for inner in layer["branch"]:
            lines += _layer(inner, indent + "    ")
        return lines
    if "branches" in layer:
        lines = [indent + f"parallel {op_for(kind)}:"]
        for branch in layer["branches"]:
            lines.append(indent + "    branch:")
            for inner in branch:
                lines += _layer(inner, indent + "        ")
        return lines
    if kind in FORMULAS:
        return [indent + f'act "{FORMULAS[kind](layer)}"']
    name = op_for(kind)
    args = {("stride" if k == "strides" else k.lower()): _value(v) for k, v in layer.items()
            if k not in ("op", "_folder")}
    if issubclass(REGISTRY[name], Windowed) and "stride" not in args:
        args["stride"] = "1"  # neural-tangents' default, not infkernel's window for pools
    return [indent + " ".join([name, *(f"{k}={v}" for k, v in args.items())])]


def spec_text(case: dict) -> str:
    """The case's network in the infkernel language."""
    lines = [f"# golden case {case['name']}", f"input {_dims(case['input_shape'])}",
             f"parameterization {case.get('parameterization', 'ntk')}"]
    for layer in case["layers"]:
        lines += _layer(layer, "")
    return "\n".join(lines) + "\n"
