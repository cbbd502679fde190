"""The benchmark command's plumbing (speed itself is measured by `infkernel bench`, not here)."""
import json
from pathlib import Path

import numpy as np
import pytest

from infkernel import bench, parse
from infkernel.cli import main


def test_compare_reports_the_largest_relative_difference_and_the_off_diagonal_one(tmp_path):
    b = np.array([[4.0, 1.0], [1.0, 2.0]])
    a = b.copy()
    a[0, 0] += 0.04  # diagonal: 0.04 / 4 = 1e-2
    a[0, 1] -= 0.002  # off the diagonal: 0.002 / 4 = 5e-4
    np.savez(tmp_path / "a.npz", nngp=b, ntk=a)
    np.savez(tmp_path / "b.npz", nngp=b, ntk=b)
    diff = bench.compare(tmp_path / "a.npz", tmp_path / "b.npz")
    assert diff["nngp"] == 0
    assert diff["ntk"] == pytest.approx(1e-2)
    assert diff["ntk off"] == pytest.approx(5e-4)


# A copy of ../shared/peer/workloads.json, so that a bare clone checks the bundled specs too.
WORKLOADS_JSON = Path(__file__).resolve().parent / "data" / "peer" / "workloads.json"


def test_workload_specs_match_the_workload_inputs():
    workloads = json.loads(WORKLOADS_JSON.read_text())
    assert set(bench.WORKLOADS) <= set(workloads)
    for name in bench.WORKLOADS:
        assert tuple(parse(bench.spec_path(name)).input_shape) == tuple(workloads[name]["input_shape"])
        assert bench.DEFAULT_N[name] == workloads[name]["n"]


def test_worker_times_a_small_kernel_and_saves_it(tmp_path):
    result = bench.run_infkernel("fc-deep", 6, repeats=1, save=str(tmp_path / "k.npz"))
    assert result.seconds > 0 and result.peak_mb > 0 and len(result.times) == 1
    saved = np.load(tmp_path / "k.npz")
    assert saved["ntk"].shape == (6, 6) and np.allclose(saved["ntk"], saved["ntk"].T)


def test_unknown_workload_is_a_user_error(capsys):
    assert main(["bench", "resnet-9000"]) == 2
    assert "unknown workload" in capsys.readouterr().err


def test_each_workload_may_name_its_own_n(capsys):
    from infkernel.commands.bench import _workload
    assert _workload("cnn-flatten:128", 7) == ("cnn-flatten", 128)
    assert _workload("fc-deep", 7) == ("fc-deep", 7)
    assert _workload("fc-deep", None) == ("fc-deep", bench.default_n("fc-deep"))
    assert main(["bench", "cnn-flatten:0"]) == 2
    assert "WORKLOAD:N" in capsys.readouterr().err


def test_reference_line_reports_each_float32_kernel_against_the_float64_one(tmp_path):
    ref = np.array([[2.0, 1.0], [1.0, 2.0]])
    np.savez(tmp_path / "ref.npz", nngp=ref, ntk=ref)
    np.savez(tmp_path / "ours.npz", nngp=ref + 2e-6, ntk=ref)
    line = bench.reference_line("attention", tmp_path / "ours.npz", tmp_path / "ref.npz", tmp_path / "ref.npz")
    assert "infkernel nngp 1.0e-06 ntk 0.0e+00" in line and "neural-tangents float32 nngp 0.0e+00" in line


def test_x64_reference_needs_the_peer(capsys):
    assert main(["bench", "attention", "--x64-reference"]) == 2
    assert "needs --peer" in capsys.readouterr().err


FAKE_PEER = """
import json, sys, pathlib
import numpy as np
n = int(sys.argv[3])
np.savez(sys.argv[sys.argv.index("--save") + 1], nngp=np.eye(n), ntk=np.eye(n))
count = pathlib.Path(__file__).with_name("count")
calls = int(count.read_text()) + 1 if count.exists() else 1
count.write_text(str(calls))
print(json.dumps({"seconds": [4.0, 1.0][calls - 1], "first_call_seconds": 9.0}))
"""


def test_rounds_alternate_the_two_and_report_medians(tmp_path, monkeypatch, capsys):
    """--rounds 2 runs infkernel and neural-tangents (here a stand-in that takes 4 s, then 1 s)
    twice each: the row shows the median 2.5 s, and a line lists both rounds."""
    import sys
    (tmp_path / "nt_bench.py").write_text(FAKE_PEER)
    monkeypatch.setenv("INFKERNEL_PEER_DIR", str(tmp_path))
    assert main(["bench", "fc-deep:6", "--peer", sys.executable, "--rounds", "2", "--repeats", "1",
                 "--no-peaks"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("fc-deep "))
    assert "    2.50 " in row  # NT s, the median of 4 and 1
    assert "2 rounds" in out and "neural-tangents 4 1," in out
    assert (tmp_path / "count").read_text() == "2"


def test_median_result_takes_medians_and_the_largest_peak():
    rounds = [bench.Result("infkernel", "fc-deep", 8, s, c, mb, cpu_seconds=s / 2)
              for s, c, mb in [(3.0, 1.0, 100), (1.0, 5.0, 300), (2.0, 2.0, 200)]]
    merged = bench.median_result(rounds)
    assert (merged.seconds, merged.compile_seconds, merged.cpu_seconds, merged.peak_mb) == (2.0, 2.0, 1.0, 300)
    assert merged.times == [3.0, 1.0, 2.0]
