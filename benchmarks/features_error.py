"""Random feature maps against exact kernels: relative error against m, bias, cost (issue 14).

    python benchmarks/features_error.py            # writes docs/features_error.png, prints the tables

Three specs on 32 of scikit-learn's 8x8 digits: a depth-3 ReLU MLP (ntk
parameterization), an erf/gelu MLP (standard parameterization), and a
CNTK-GAP (2 conv 3x3 + relu blocks, global average pooling). For each m, the
relative Frobenius error ||Phi Phi^T - K|| / ||K|| against the exact float64
kernel of ik.compile, mean over 6 seeds, for the NNGP and the NTK; the fitted
log-log slope; the bias (error of the mean of 50 maps at m = 64 against the
error expected without bias, single / sqrt(50)); and the per-layer cost.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import infkernel as ik  # noqa: E402

SPECS = {
    "MLP relu, depth 3": "input 8x8x1\nflatten\nrepeat 3:\n    dense w_std=sqrt(2) b_std=0.1\n    relu\ndense\n",
    "MLP erf/gelu, standard": "input 8x8x1\nparameterization standard\nflatten\ndense width=64 w_std=1.5 b_std=0.1\n"
                              "erf\ndense width=64 w_std=1.3\ngelu\ndense width=10\n",
    "CNTK-GAP, 2 conv": "input 8x8x1\nrepeat 2:\n    conv 3x3 same w_std=sqrt(2)\n    relu\ngap\ndense\n",
}
MS = {"MLP relu, depth 3": [64, 128, 256, 512, 1024, 2048],
      "MLP erf/gelu, standard": [64, 128, 256, 512, 1024, 2048],
      "CNTK-GAP, 2 conv": [64, 128, 256, 512, 1024]}


def rel(phi, k):
    return float(np.linalg.norm(phi @ phi.T - k) / np.linalg.norm(k))


def main():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = ik.datasets.load_digits().x_train[:32]
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    rows, bias_rows = [], []
    for (name, spec), color in zip(SPECS.items(), ("C0", "C1", "C2")):
        graph = ik.parse(spec)
        exact = ik.compile(spec)(x, dtype="float64")
        for get, style in (("nngp", "--"), ("ntk", "-")):
            k = getattr(exact, get)
            ms, errors = MS[name], []
            for m in ms:
                start = time.perf_counter()
                errors.append(np.mean([rel(ik.features(graph, m, get=get, seed=s)(x), k) for s in range(6)]))
                print(f"{name:24s} {get:4s} m={m:5d} error {errors[-1]:.4f} ({time.perf_counter() - start:.1f} s)",
                      flush=True)
            slope = np.polyfit(np.log(ms), np.log(errors), 1)[0]
            rows.append((name, get, errors[0], errors[-1], ms[-1], slope))
            ax.loglog(ms, errors, style, color=color, marker="o", ms=3,
                      label=f"{name}, {get.upper()} (slope {slope:.2f})")
            grams = np.array([(lambda p: p @ p.T)(ik.features(graph, 64, get=get, seed=1000 + s)(x))
                              for s in range(50)])
            single = np.mean([np.linalg.norm(g - k) for g in grams]) / np.linalg.norm(k)
            bias_rows.append((name, get, single, np.linalg.norm(grams.mean(0) - k) / np.linalg.norm(k),
                              single / np.sqrt(50)))
    ms = np.array([64, 2048])
    ax.loglog(ms, 1.5 * (ms / 64.0) ** -0.5, ":", color="gray", label="m^(-1/2)")
    ax.set_xlabel("feature dimension m")
    ax.set_ylabel("||Phi Phi^T - K||_F / ||K||_F")
    ax.set_title("Random features vs exact kernels, 32 digits (mean of 6 seeds)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    out = ROOT / "docs" / "features_error.png"
    fig.savefig(out, dpi=120)
    print(f"\nwrote {out}\n")
    print("| spec | kernel | error at m=64 | error at largest m | slope |")
    print("|---|---|---|---|---|")
    for name, get, first, last, m, slope in rows:
        print(f"| {name} | {get} | {first:.3f} | {last:.4f} (m={m}) | {slope:.2f} |")
    print("\n| spec | kernel | single map, m=64 | mean of 50 maps | expected if unbiased |")
    print("|---|---|---|---|---|")
    for name, get, single, mean, expected in bias_rows:
        print(f"| {name} | {get} | {single:.3f} | {mean:.4f} | {expected:.4f} |")
    fmap = ik.features(SPECS["CNTK-GAP, 2 conv"], 1024, get="ntk")
    print("\nCNTK-GAP NTK map, m=1024, per example (XLA's flop count):\n")
    print("| node | op | MFLOP | output floats | random-matrix floats |")
    print("|---|---|---|---|---|")
    for r in fmap.cost():
        print(f"| {r['node']} | {r['op']} | {r['flops'] / 1e6:.2f} | {r['floats']} | {r['param_floats']} |")


if __name__ == "__main__":
    main()
