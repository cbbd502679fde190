"""The Dask runner on a local cluster of 2 worker processes (127.0.0.1 only):
the kernel equals the in-process one bit for bit, survives a worker killed
mid-run, and a client killed mid-run resumes recomputing at most the tiles in
flight. Each test is bounded in time; the cluster closes at the end.

One spec and one tile plan throughout, so each worker compiles once.
"""
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import infkernel as ik

distributed = pytest.importorskip("distributed")
zarr = pytest.importorskip("zarr")

ROOT = Path(__file__).resolve().parents[1]
SPEC = "input 4x4x2\nconv 3x3 same w_std=1.4 b_std=0.1\nrelu\nconv 2x2 w_std=1.3\nrelu\ngap\ndense\n"
SIDE = 4
LIMIT = 240  # seconds any one wait may take


def data(n, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 4, 4, 2)).astype(np.float32)


@pytest.fixture(scope="module")
def kfn():
    return ik.compile(SPEC)


@pytest.fixture(scope="module")
def client():
    import logging
    env = {"PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), "JAX_PLATFORMS": "cpu"}
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR, env=env) as cluster:
        with distributed.Client(cluster) as c:
            c.wait_for_workers(2, timeout=LIMIT)
            yield c


def done_count(path):
    try:
        return int((zarr.open_group(path, mode="r")["done"][:] > 0).sum())
    except Exception:  # not created yet
        return 0


def wait_for(condition, what):
    deadline = time.monotonic() + LIMIT
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


def test_two_workers_equal_the_in_process_kernel(kfn, client, tmp_path):
    x = data(10)
    local = kfn(x, out=tmp_path / "local.zarr", batch_size=SIDE, progress=False)
    remote = kfn(x, out=tmp_path / "dask.zarr", batch_size=SIDE, scheduler=client, progress=False)
    assert kfn.last_run["computed"] == 6
    runs = zarr.open_group(tmp_path / "dask.zarr", mode="r").attrs["infkernel"]["runs"]
    assert "2 workers, workers write" in runs[-1]["runner"]
    # Results through the client (no store): the same bits.
    through = kfn(x, batch_size=SIDE, scheduler=client, progress=False)
    # Each worker built the program once, and compiled each of its functions once, for both runs.
    kept = client.run(lambda: [sorted(fn._cache_size() for fn in kernel.calls._fns.values()) for kernel in
                               __import__("infkernel.engine.dask_runner", fromlist=["x"])._KERNELS.values()])
    assert all(len(k) <= 1 for k in kept.values()) and any(kept.values()), kept
    assert all(sizes == [1, 1] for k in kept.values() for sizes in k), kept
    for kind in ("nngp", "ntk"):
        ref = getattr(local, kind)[:]
        assert np.array_equal(getattr(remote, kind)[:], ref)
        assert np.array_equal(getattr(through, kind), ref)  # (test_store: equal to the default engine)


def test_client_killed_mid_run_resumes(kfn, client, tmp_path):
    x = data(48)  # 12 x 12 tiles, 78 computed
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "net.ik").write_text(SPEC)
    path = tmp_path / "K.zarr"
    cmd = [sys.executable, "-m", "infkernel.cli", "kernel", str(tmp_path / "net.ik"), "--x1", str(tmp_path / "x.npy"),
           "--out", str(path), "--batch-size", str(SIDE), "--scheduler", client.scheduler.address, "--quiet"]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        wait_for(lambda: done_count(path) >= 20 or first.poll() is not None, "the first run to get going")
    finally:
        first.kill()  # SIGKILL: no clean-up of any kind
        first.wait(timeout=30)
    assert first.returncode == -signal.SIGKILL, first.stderr.read().decode()[-2000:]
    wait_for(lambda: not client.processing() or not any(client.processing().values()), "the workers to drain")
    group = zarr.open_group(path, mode="r")
    done1, started1 = group["done"][:] > 0, group["started"][:]
    total = 12 * 13 // 2
    assert 20 <= done1.sum() < total
    lost = (started1 > 0) & ~done1  # started, never finished: in flight when the client died
    resumed = time.time()
    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=LIMIT)
    assert second.returncode == 0, second.stderr[-2000:]
    recomputed_all = group["started"][:] >= resumed
    assert f"{total - done1.sum()} of {total} chunks computed" in second.stdout
    assert recomputed_all.sum() == total - done1.sum()  # every tile not done, no tile done
    assert not (recomputed_all & done1).any()
    in_flight = int(lost.sum())
    assert in_flight <= 2 * 2  # at most the tasks running or queued on 2 single-thread workers
    print(f"\nclient SIGKILLed after {done1.sum()} of {total} tiles; {in_flight} started and unfinished, "
          f"recomputed {int((recomputed_all & lost).sum())}; resumed run computed {recomputed_all.sum()}")
    whole = kfn(x, out=tmp_path / "W.zarr", batch_size=SIDE, scheduler=client, progress=False)
    assert np.array_equal(group["ntk"][:], whole.ntk[:]) and np.array_equal(group["nngp"][:], whole.nngp[:])
    assert ik.open_kernel(path).ntk.shape == (48, 48)


def test_worker_killed_mid_run_gives_the_same_kernel(kfn, client, tmp_path):
    x = data(48)
    path = tmp_path / "K.zarr"
    pids = client.run(os.getpid)
    result = {}

    def compute():
        try:
            result["k"] = kfn(x, out=path, batch_size=SIDE, scheduler=client, progress=False)
        except BaseException as e:  # noqa: BLE001 - reported below
            result["error"] = e

    thread = threading.Thread(target=compute, daemon=True)
    thread.start()
    wait_for(lambda: done_count(path) >= 20 or not thread.is_alive(), "the run to get going")
    victim = sorted(pids.values())[0]
    os.kill(victim, signal.SIGKILL)
    killed_at = done_count(path)
    thread.join(timeout=LIMIT)
    assert not thread.is_alive() and "error" not in result, result.get("error")
    assert 20 <= killed_at < 78, "the worker must die mid-run"
    ref = kfn(x, out=tmp_path / "ref.zarr", batch_size=SIDE, progress=False)
    assert np.array_equal(result["k"].ntk[:], ref.ntk[:]) and np.array_equal(result["k"].nngp[:], ref.nngp[:])
    assert victim not in client.run(os.getpid).values()


def test_cli_workers_starts_a_local_cluster(tmp_path, capsys):
    """--workers N: a local cluster of its own, closed at the end (a dense spec: a quick compile)."""
    from infkernel.cli import main as cli_main
    spec = "input 5\nrepeat 2:\n    dense w_std=1.4 b_std=0.1\n    relu\ndense\n"
    (tmp_path / "net.ik").write_text(spec)
    x = np.random.default_rng(0).standard_normal((12, 5)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert cli_main(["kernel", str(tmp_path / "net.ik"), "--x1", str(tmp_path / "x.npy"), "--out",
                     str(tmp_path / "K.npz"), "--batch-size", "5", "--workers", "1", "--quiet"]) == 0
    local = ik.compile(spec)(x, batch_size=5, out=tmp_path / "L.zarr", progress=False)
    saved = np.load(tmp_path / "K.npz")
    assert np.array_equal(saved["ntk"], local.ntk[:]) and np.array_equal(saved["nngp"], local.nngp[:])
