"""The notebooks in notebooks/ run top to bottom and show what their titles claim.

Each notebook's last code cell prints its key numbers as one line of JSON
(``print(json.dumps(claims))``). The tests execute every notebook with
nbclient (kernel python3, matplotlib on Agg unless the notebook asks for
inline), read that line back from the executed notebook and assert the claim
on it (at the smaller sizes a notebook may pick under INFKERNEL_NOTEBOOK_SMALL=1:
every cell still runs, the same claims hold); they check the committed notebooks
too (executed at full size, with PNG plots, under 500 KB, and with numbers that satisfy the same claims). `CHECKS` holds
one function per notebook; `test_checks_can_fail` feeds each one numbers
that contradict its claim.

Run one notebook: ``python -m pytest tests/test_notebooks.py -k quickstart``; skip executing
them (the checks on the committed notebooks still run): ``INFKERNEL_SKIP_NOTEBOOKS=1``.
Re-execute and save a notebook in place (what is committed):
``python tests/test_notebooks.py notebooks/01_quickstart.ipynb``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
CELL_TIMEOUT = 600  # seconds per cell; the whole set takes a few minutes on 2 cores
MAX_BYTES = 500_000


def execute(path: Path, small: bool = False):
    """Run the notebook at `path` top to bottom in a fresh python3 kernel; return (notebook, seconds).
    small: INFKERNEL_NOTEBOOK_SMALL=1 in the kernel, where a notebook reads it to run at smaller sizes."""
    import nbclient
    import nbformat

    nb = nbformat.read(path, as_version=4)
    env = dict(os.environ)
    env.setdefault("MPLBACKEND", "Agg")
    env["INFKERNEL_NOTEBOOK_SMALL"] = "1" if small else "0"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    cpu = {}

    def kernel_cpu(**_):  # CPU seconds of the kernel process so far (a shared machine inflates wall time)
        try:
            import psutil

            t = psutil.Process(client.km.provisioner.pid).cpu_times()
            cpu["seconds"] = t.user + t.system
        except Exception:  # noqa: BLE001 - a measurement only
            pass

    client.on_cell_executed = kernel_cpu
    start = time.perf_counter()
    client.execute(env=env)
    nb.metadata["execution_seconds"] = {"wall": round(time.perf_counter() - start, 1),
                                        "kernel_cpu": round(cpu.get("seconds", float("nan")), 1)}
    return nb, time.perf_counter() - start


def claims(nb) -> dict:
    """The JSON dict printed by the notebook's last code cell."""
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, "the notebook has no code cell"
    text = "".join(o.get("text", "") for o in code[-1].get("outputs", []) if o.get("output_type") == "stream")
    lines = [ln for ln in text.splitlines() if ln.lstrip().startswith("{")]
    assert lines, "the last code cell printed no JSON claims"
    return json.loads(lines[-1])


def images(nb) -> int:
    return sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code"
               for o in c.get("outputs", []))


def errors(nb) -> list[str]:
    return [f"{o.get('ename')}: {o.get('evalue')}" for c in nb.cells if c.cell_type == "code"
            for o in c.get("outputs", []) if o.get("output_type") == "error"]


# --------------------------------------------------------------------------- the claims


def increasing(values) -> bool:
    return all(b > a for a, b in zip(values, values[1:]))


def check_quickstart(c: dict) -> None:
    """NNGP and NTK kernel regression classify digits well above chance and above the linear kernel."""
    for kind in ("nngp", "ntk"):
        assert c[f"{kind}_accuracy"] >= 0.95, c
        assert c[f"{kind}_accuracy"] > c["linear_accuracy"], c
    # gradient flow with the NTK reaches kernel regression: its accuracy at the last t is that at t = inf
    assert abs(c["flow_accuracy_last"] - c["ntk_accuracy"]) <= 0.01, c
    assert c["flow_accuracy_first"] < c["ntk_accuracy"], c


def check_linearization(c: dict) -> None:
    """The wider network stays closer to the infinite-width prediction, at every width pair."""
    dev = c["max_deviation"]
    widths = c["widths"]
    assert widths == sorted(widths) and len(widths) >= 2, c
    assert all(b < a for a, b in zip(dev, dev[1:])), c
    # and close in absolute terms at the largest width (outputs are O(1))
    assert dev[-1] < 0.25 * c["output_scale"], c
    # at the rate width^(-1/2) of Lee et al.'s Theorem 2.1 (the log-log slope over the widths)
    assert -0.8 < c["slope"] < -0.3, c


def check_spectral_bias(c: dict) -> None:
    """Low modes are learned first: the time to halve the residual grows with the degree."""
    assert increasing(c["kernel_t_half"]), c
    assert increasing(c["network_t_half"]), c
    # the kernel's halving times are those of its Funk-Hecke eigenvalues, ln 2 / (n lam_k)
    for measured, predicted in zip(c["kernel_t_half"], c["funk_hecke_t_half"]):
        assert abs(measured / predicted - 1) < 0.1, c
    # the finite network follows the kernel's time scales, mode by mode
    for net, kernel in zip(c["network_t_half"], c["kernel_t_half"]):
        assert 1 / 1.5 < net / kernel < 1.5, c


def check_learning_curves(c: dict) -> None:
    """Measured per-mode errors follow the theory's mode_mse (within a factor); mode_errors does not."""
    assert 1 / 1.5 <= c["min_ratio_mode_mse"] <= c["max_ratio_mode_mse"] <= 1.5, c
    assert 1 / 1.25 <= c["min_ratio_E_g"] <= c["max_ratio_E_g"] <= 1.25, c
    # the other split of E_g is not the measured error per mode
    assert c["max_ratio_mode_errors"] > 10, c
    assert increasing([-e for e in c["E_g_measured"]]), c  # more data, less error


def check_lazy_vs_rich(c: dict) -> None:
    """Kernel movement falls with width under ntk (not under mup) and with the output scale alpha;
    the test loss of lazy training approaches the infinite-width NTK's."""
    assert increasing([-m for m in c["ntk_movement_by_width"]]), c
    assert c["ntk_slope"] < -0.3, c
    assert abs(c["mup_slope"]) < 0.2 and c["mup_slope"] > c["ntk_slope"] + 0.2, c
    assert min(c["mup_movement_by_width"]) > 0.2, c  # mup moves its kernel by O(1) at every width
    assert increasing([-m for m in c["movement_by_alpha"]]), c
    assert -1.3 < c["alpha_tail_slope"] < -0.7, c  # like 1/alpha at the lazy end (Chizat et al. 2019)
    ntk_test, inf = c["ntk_test_loss_by_width"], c["infinite_ntk_test_loss"]
    assert abs(ntk_test[-1] - inf) < abs(ntk_test[0] - inf), c
    # measured on this task: feature learning (mup, small alpha) beats the kernel
    assert c["mup_test_loss_by_width"][-1] < inf, c
    assert c["test_loss_by_alpha"][0] < c["test_loss_by_alpha"][-1], c


def check_depth_and_pooling(c: dict) -> None:
    """On digits, CNTK-GAP beats CNTK-V and FC from depth 2 on (Arora et al. 2019, Table 1, in small);
    at depth 1 (a 3x3 receptive field) pooling loses to the vanilla CNTK."""
    depths, acc, mse = c["depths"], c["accuracy"], c["mse"]
    assert depths[:2] == [1, 2] and len(depths) >= 3, c
    for i, depth in enumerate(depths):
        if depth >= 2:
            assert mse["gap"][i] < min(mse["vanilla"][i], mse["fc"][i]), c
            assert acc["gap"][i] >= max(acc["vanilla"][i], acc["fc"][i]), c
    assert mse["gap"][1] < mse["gap"][0], c  # GAP needs depth
    assert mse["gap"][0] > mse["vanilla"][0], c  # the exception at depth 1


CHECKS = {
    "01_quickstart": check_quickstart,
    "02_linearization": check_linearization,
    "03_spectral_bias": check_spectral_bias,
    "04_learning_curves": check_learning_curves,
    "05_lazy_vs_rich": check_lazy_vs_rich,
    "06_depth_and_pooling": check_depth_and_pooling,
}

# Numbers that contradict each claim: every check must reject them.
BAD = {
    "01_quickstart": {"nngp_accuracy": 0.97, "ntk_accuracy": 0.5, "linear_accuracy": 0.9,
                      "flow_accuracy_first": 0.3, "flow_accuracy_last": 0.5},
    "02_linearization": {"widths": [64, 1024], "max_deviation": [0.2, 0.3], "output_scale": 1.0, "slope": 0.15},
    "03_spectral_bias": {"kernel_t_half": [0.1, 1.0, 0.5, 4.0], "network_t_half": [0.1, 1.0, 2.0, 4.0],
                         "funk_hecke_t_half": [0.1, 1.0, 0.5, 4.0]},
    "04_learning_curves": {"factor": 1.5, "min_ratio_mode_mse": 0.9, "max_ratio_mode_mse": 3.0,
                           "min_ratio_E_g": 1.0, "max_ratio_E_g": 1.1, "max_ratio_mode_errors": 100.0,
                           "E_g_measured": [0.5, 0.3, 0.2]},
    "05_lazy_vs_rich": {"ntk_movement_by_width": [0.1, 0.05, 0.02], "ntk_slope": -0.5, "mup_slope": -0.45,
                        "mup_movement_by_width": [0.7, 0.5, 0.3], "movement_by_alpha": [0.1, 0.01, 0.001],
                        "alpha_tail_slope": -1.0, "ntk_test_loss_by_width": [0.2, 0.15, 0.13],
                        "infinite_ntk_test_loss": 0.13, "mup_test_loss_by_width": [0.15, 0.12, 0.11],
                        "test_loss_by_alpha": [0.1, 0.12, 0.14]},
    "06_depth_and_pooling": {"depths": [1, 2, 3],
                             "accuracy": {"fc": [0.9, 0.9, 0.9], "vanilla": [0.9, 0.95, 0.95], "gap": [0.8, 0.97, 0.97]},
                             "mse": {"fc": [0.3, 0.3, 0.3], "vanilla": [0.3, 0.2, 0.2], "gap": [0.4, 0.25, 0.2]}},
}


def test_every_notebook_has_a_check():
    assert {p.stem for p in NOTEBOOKS} <= set(CHECKS), "a notebook without a claim check"


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_checks_can_fail(name):
    with pytest.raises(AssertionError):
        CHECKS[name](BAD[name])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_notebook(path):
    """As committed: executed in order, with plots, small, and its stored numbers satisfy its claim."""
    import nbformat

    assert path.stat().st_size < MAX_BYTES, f"{path.name} is {path.stat().st_size} bytes"
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), "not executed top to bottom"
    assert not errors(nb), errors(nb)
    assert images(nb) >= 1, "no PNG plot in the outputs"
    CHECKS[path.stem](claims(nb))


PARALLEL = 2  # notebooks executed at once by `small_runs` (CI has 2 cores; imports and compiles are serial)


@pytest.fixture(scope="module")
def small_runs(request, tmp_path_factory):
    """The selected notebooks executed at their small sizes, PARALLEL at a time, each by its own
    process (`python tests/test_notebooks.py --small-to OUT NOTEBOOK`) in its own fresh kernel:
    {stem: Future of (CompletedProcess, path of the executed notebook)}."""
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    from concurrent.futures import ThreadPoolExecutor

    tmp = tmp_path_factory.mktemp("notebooks")
    wanted = [item.callspec.params["path"] for item in request.session.items
              if getattr(item, "originalname", None) == "test_notebook_runs"]

    def run(path):
        out = tmp / path.name
        proc = subprocess.run([sys.executable, __file__, "--small-to", str(out), str(path)], capture_output=True,
                              text=True, timeout=3 * CELL_TIMEOUT)
        return proc, out

    pool = ThreadPoolExecutor(max_workers=PARALLEL)
    yield {p.stem: pool.submit(run, p) for p in wanted}
    pool.shutdown(cancel_futures=True)


@pytest.mark.skipif(os.environ.get("INFKERNEL_SKIP_NOTEBOOKS") == "1", reason="INFKERNEL_SKIP_NOTEBOOKS=1")
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, small_runs):
    """Executed now, top to bottom (at its small sizes), the notebook's numbers satisfy its claim."""
    import nbformat

    proc, out = small_runs[path.stem].result()
    assert proc.returncode == 0 and out.exists(), proc.stdout[-2000:] + proc.stderr[-3000:]
    nb = nbformat.read(out, as_version=4)
    assert not errors(nb), errors(nb)
    assert images(nb) >= 1, "no PNG plot in the outputs"
    c = claims(nb)
    print(proc.stdout.strip())
    CHECKS[path.stem](c)


if __name__ == "__main__":  # re-execute notebooks in place, keeping their outputs (--small-to OUT: small, into OUT)
    import nbformat

    args = sys.argv[1:]
    small_to = None
    if args[:1] == ["--small-to"]:
        small_to, args = Path(args[1]), args[2:]
    for arg in args:
        p = Path(arg).resolve()
        nb, seconds = execute(p, small=small_to is not None)
        nbformat.write(nb, small_to or p)
        print(f"{p.name}: {seconds:.1f} s wall, {nb.metadata['execution_seconds']['kernel_cpu']} s kernel CPU, "
              f"{(small_to or p).stat().st_size / 1e3:.0f} KB, {images(nb)} plots, errors {errors(nb)}")
        print(json.dumps(claims(nb)))
