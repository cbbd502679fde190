"""The reference kernels (neural-tangents 0.6.5, float64), copied from ../shared/golden and
../shared/golden-v2 into tests/data so that a bare clone runs the suite, and their layer lists
written as spec text."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parent / "data"
GOLDEN = Path(os.environ.get("INFKERNEL_GOLDEN", DATA / "golden"))
GOLDEN_V2 = Path(os.environ.get("INFKERNEL_GOLDEN_V2", DATA / "golden-v2"))


def cases(folder: Path = GOLDEN) -> list[dict]:
    """The cases of one reference set, each remembering the folder it came from."""
    return [{**case, "_folder": str(folder)} for case in json.loads((folder / "cases.json").read_text())]


def load(case: dict) -> dict:
    with np.load(Path(case.get("_folder", GOLDEN)) / case["file"]) as data:
        return {k: data[k] for k in data.files}


def _dims(values) -> str:
    return "x".join(str(v) for v in values)


def _layer(layer: dict, indent: str) -> list[str]:
    op = layer["op"]
    args = []
    if op == "residual":
        lines = [indent + "residual:"]
        for inner in layer["branch"]:
            lines += _layer(inner, indent + "    ")
        return lines
    if op in ("dense", "conv"):
        if op == "conv":
            args += [_dims(layer["window"]), layer.get("padding", "VALID").lower()]
            if "strides" in layer:
                args.append(f"stride={_dims(layer['strides'])}")
        if "width" in layer:
            args.append(f"width={layer['width']}")
        args.append(f"w_std={layer['W_std']!r}")
        if "b_std" in layer:  # absent: no bias; 0.0: a bias initialised at zero
            args.append(f"b_std={layer['b_std']!r}")
    elif op == "avgpool":
        args.append(_dims(layer["window"]))
        if "strides" in layer:
            args.append(f"stride={_dims(layer['strides'])}")
        if "padding" in layer:
            args.append(layer["padding"].lower())
    elif op == "global_avg_pool":
        op = "gap"
    else:
        args += [f"{k}={v!r}" for k, v in layer.items() if k not in ("op", "_folder")]
    return [indent + " ".join([op, *args])]


def spec_text(case: dict) -> str:
    """The case's network in the infkernel language."""
    lines = [f"# golden case {case['name']}", f"input {_dims(case['input_shape'])}",
             f"parameterization {case.get('parameterization', 'ntk')}"]
    for layer in case["layers"]:
        lines += _layer(layer, "")
    return "\n".join(lines) + "\n"
