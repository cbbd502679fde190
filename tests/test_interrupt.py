"""Ctrl-C during a kernel run into a Zarr store (issue 17): one line saying what was done, where the partial
store is and how to resume; exit status 130; no traceback. The resumed run finishes the rest."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SPEC = "input 4x4x2\nconv 3x3 same w_std=1.4 b_std=0.1\nrelu\nconv 2x2 w_std=1.3\nrelu\ngap\ndense\n"
LIMIT = 240


def done_count(path: Path) -> int:
    """Tiles marked done: the chunk files of the store's `done` array (one chunk per tile, written
    when the tile is done), counted on the file system while the run writes them."""
    chunks = path / "done" / "c"
    return sum(1 for f in chunks.rglob("*") if f.is_file()) if chunks.is_dir() else 0


def test_ctrl_c_on_a_zarr_run_prints_a_summary_and_the_store_resumes(tmp_path):
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(80, 4, 4, 2)).astype(np.float32))
    (tmp_path / "net.ik").write_text(SPEC)
    path = tmp_path / "K.zarr"
    cmd = [sys.executable, "-m", "infkernel.cli", "kernel", str(tmp_path / "net.ik"), "--x1", str(tmp_path / "x.npy"),
           "--out", str(path), "--batch-size", "2", "--quiet"]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), JAX_PLATFORMS="cpu")
    # SIGINT back to its default in the child: if a test earlier in the suite leaves it
    # ignored in this process, children inherit an ignored SIGINT, and Python then never raises
    # KeyboardInterrupt: the run finished despite the Ctrl-C.
    run = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + LIMIT
    # interrupt as soon as a tile is stored (on a loaded machine a whole run can pass within a few polls)
    while done_count(path) < 1 and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    run.send_signal(signal.SIGINT)
    out, err = run.communicate(timeout=LIMIT)
    assert run.returncode == 130, (out, err)
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("interrupted after"), err
    done = int(lines[0].split(": ")[1].split(" of ")[0])
    assert done >= 1 and f"kept in {path}" in lines[0] and "run the same command again to resume" in lines[0]
    total = 40 * 41 // 2
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=LIMIT)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"{total - done} of {total} chunks computed, {done} already done" in again.stdout, again.stdout
