"""Two worker processes on 127.0.0.1 under MultiWorkerMirroredStrategy (``worker.py`` is one worker).

Each worker is a separate Python process with one intra-op thread, bounded in time and
killed on the way out; the single-process reference runs in the test process.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

import kcompress as kc
from kcompress.pipeline import Evaluate, Export, Pipeline, Prune, QuantizeAware

WORKER = pathlib.Path(__file__).with_name("worker.py")
REPO = WORKER.parents[2]
TIMEOUT_S = 240  # per launch of the two workers: import + training on a 2-core machine shared with others


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _env():
    env = dict(os.environ)
    env.pop("TF_CONFIG", None)
    env.update(CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO),
               OMP_NUM_THREADS="1", KCOMPRESS_DATA_DIR=os.environ.get("KCOMPRESS_DATA_DIR", ""))
    return env


@contextlib.contextmanager
def _cluster(tmp_path, tag, configs):
    """Starts one process per config (task i of len(configs)); kills whatever is left on exit."""
    ports = _free_ports(len(configs))
    procs = []
    try:
        for i, cfg in enumerate(configs):
            cfg = {**cfg, "task": i, "ports": ports, "result": str(tmp_path / f"{tag}_w{i}.json")}
            log = open(tmp_path / f"{tag}_w{i}.log", "w")  # noqa: SIM115 - closed below
            procs.append((subprocess.Popen([sys.executable, str(WORKER), json.dumps(cfg)], stdout=log,
                                           stderr=subprocess.STDOUT, env=_env(), cwd=str(REPO),
                                           start_new_session=True), log, cfg))
        yield procs
    finally:
        for proc, log, _ in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
            log.close()


def _wait(procs, tmp_path, tag, timeout=TIMEOUT_S):
    deadline = time.monotonic() + timeout
    results = []
    for i, (proc, _, cfg) in enumerate(procs):
        try:
            rc = proc.wait(max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            rc = "timeout"
        log = (tmp_path / f"{tag}_w{i}.log").read_text()[-3000:]
        assert rc == 0, f"worker {i} ended with {rc}:\n{log}"
        with open(cfg["result"]) as f:
            result = json.load(f)
        with np.load(cfg["result"] + ".npz") as f:
            result["weights"] = {k: f[k] for k in f.files}
        results.append(result)
    return results


def _weights_file(tmp_path, model):
    path = tmp_path / "baseline.npz"
    np.savez(path, *model.get_weights())
    return str(path)


def _same_weights(a, b, prefix):
    keys = sorted(k for k in a if k.startswith(prefix))
    assert keys and keys == sorted(k for k in b if k.startswith(prefix))
    return max(float(np.max(np.abs(a[k] - b[k]))) if a[k].size else 0.0 for k in keys)


def _files(folder):
    return sorted(p.name for p in pathlib.Path(folder).rglob("*") if p.is_file()) if os.path.isdir(folder) else []


def _digests(folder):
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in pathlib.Path(folder).rglob("*") if p.is_file()}


def _reference(ds, model, prune_epochs):
    return Pipeline([Prune(0.75, epochs=prune_epochs, batch_size=64),
                     QuantizeAware(epochs=1, batch_size=64, learning_rate=1e-4),
                     Export("int8", calibration_samples=50), Evaluate(latency_runs=5)], name="single").run(
        ds, model=model, seed=0, verbose=0)


@pytest.mark.slow
def test_prune_qat_pipeline_and_distiller_on_two_workers(tmp_path, trained_lenet, mnist):
    ds = mnist.take(train=1200, test=400)
    weights = _weights_file(tmp_path, trained_lenet)
    base = {"mode": "pipeline", "train": 1200, "test": 400, "weights": weights, "prune_epochs": 1, "more_stages": True}
    configs = [{**base, "output_dir": str(tmp_path / f"out_w{i}")} for i in range(2)]
    with _cluster(tmp_path, "mw", configs) as procs:
        # A single-process run with the same global batch (64), while the workers start.
        single = _reference(ds, trained_lenet, base["prune_epochs"])
        w0, w1 = _wait(procs, tmp_path, "mw")

    # Task 0 is the chief; it alone wrote the flatbuffer; the other worker wrote nothing.
    assert (w0["chief"], w1["chief"]) == (True, False)
    assert _files(tmp_path / "out_w0") == ["more_float32.tflite", "mw_int8.tflite"]
    assert _files(tmp_path / "out_w1") == []

    # Both workers end with the same weights (all-reduced gradients on identical copies).
    assert _same_weights(w0["weights"], w1["weights"], "pipeline_") < 1e-6
    assert _same_weights(w0["weights"], w1["weights"], "student_") < 1e-6
    # Prune + HintDistiller, PruneChannels and Cluster under MWMS too.
    assert _same_weights(w0["weights"], w1["weights"], "more_") < 1e-6
    more = {entry["stage"]: entry for entry in w0["more_log"]}
    assert more["Prune + Distill"]["finetune"].startswith("distill(T=2.0, alpha=0.5, hint=fc2")
    assert more["Prune + Distill"]["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert more["PruneChannels"]["macs_ratio"] < 0.8
    assert more["Cluster"]["entropy_bytes"] > 0
    assert w0["more_accuracy"] > 0.85
    assert w0["flatbuffer_sha256"] == w1["flatbuffer_sha256"]
    assert w0["distill_loss"] == pytest.approx(w1["distill_loss"], abs=1e-6)

    # Target sparsity reached under MWMS, and the result matches the single-process run.
    prune_log = w0["log"][0]
    assert prune_log["sparsity"] == pytest.approx(0.75, abs=0.01)
    assert single.log[0]["sparsity"] == pytest.approx(prune_log["sparsity"], abs=0.005)
    one = single.records[0]["accuracy"]
    assert w0["accuracy"] == pytest.approx(one, abs=0.02), (w0["accuracy"], one)
    assert w0["accuracy"] > 0.9
    # The distilled student learns under MWMS (loss falls, accuracy well above chance).
    assert w0["distill_loss"][1] < w0["distill_loss"][0]
    assert w0["distill_accuracy"] > 0.6
    print(f"MWMS: accuracy {w0['accuracy']:.4f} (single process {one:.4f}), sparsity {prune_log['sparsity']:.4f}, "
          f"worker import {w0['import_s']:.1f} s, pipeline {w0['pipeline_s']:.1f} s, distill {w0['distill_s']:.1f} s")


@pytest.mark.slow
def test_killed_worker_resumes_from_backup(tmp_path):
    backup = tmp_path / "backup"
    base = {"mode": "train", "train": 1000, "test": 300, "epochs": 3, "epoch_sleep": 0.3, "backup_dir": str(backup)}
    configs = [{**base, "output_dir": str(tmp_path / f"out_w{i}")} for i in range(2)]
    marker = backup / "stage00_train" / "chief" / "checkpoint"  # written by the chief after epoch 1
    with _cluster(tmp_path, "first", configs) as procs:
        deadline = time.monotonic() + TIMEOUT_S
        while not marker.exists():
            assert time.monotonic() < deadline, "no backup was written in time"
            assert all(p.poll() is None for p, _, _ in procs), (tmp_path / "first_w1.log").read_text()[-3000:]
            time.sleep(0.05)
        os.killpg(procs[1][0].pid, signal.SIGKILL)  # worker 1 dies mid-training
        # Its peer cannot finish an all-reduce without it: TensorFlow's health check fails it
        # (UnavailableError) and the cluster restarts, as a cluster manager would do.
        try:
            procs[0][0].wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(procs[0][0].pid, signal.SIGKILL)
    assert not (tmp_path / "first_w0.json").exists()  # the first run never finished
    assert _files(backup / "stage00_train" / "chief"), "the chief's backup is missing"

    with _cluster(tmp_path, "again", [{**c, "epoch_sleep": 0.0} for c in configs]) as procs:
        w0, w1 = _wait(procs, tmp_path, "again")
    resumed = w0["log"][0].get("resumed_at_epoch")
    assert resumed is not None and 1 <= resumed < 3, w0["log"]
    assert w1["log"][0].get("resumed_at_epoch") == resumed
    assert _same_weights(w0["weights"], w1["weights"], "model_") < 1e-6
    assert w0["accuracy"] > 0.8
    assert _files(tmp_path / "out_w1") == []
    assert _files(tmp_path / "out_w0") == ["resume_float32.tflite"]


def test_get_strategy_multiworker_needs_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="TF_CONFIG environment variable, which is not set"):
        kc.models.get_strategy("multiworker")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="TF_CONFIG is not valid JSON"):
        kc.models.get_strategy("multiworker")
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}))
    with pytest.raises(ValueError, match="does not name a host"):
        kc.models.get_strategy("multiworker")
    with pytest.raises(ValueError, match=r"strategy must be one of \['default', 'mirrored', 'multiworker'\], got 'tpu'"):
        kc.models.get_strategy("tpu")


def test_is_chief_of_single_process_strategies(mirrored):
    from kcompress._keras import tf

    assert kc.models.is_chief() is True
    assert kc.models.is_chief(mirrored) is True
    assert kc.models.is_chief(tf.distribute.OneDeviceStrategy("/cpu:0")) is True
    with pytest.raises(TypeError, match="strategy must be None or a tf.distribute.Strategy, got str"):
        kc.models.is_chief("multiworker")


@pytest.mark.slow
def test_compress_on_two_workers_takes_the_same_decisions_and_only_the_chief_writes(tmp_path, trained_lenet):
    settings = {"max_bytes": 40_000, "recovery_epochs": 1, "step_epochs": 1, "qat_epochs": 0, "step_fraction": 0.5,
                "batch_size": 128, "calibration_samples": 100, "verbose": 0, "seed": 0}
    base = {"mode": "compress", "train": 1000, "test": 200, "weights": _weights_file(tmp_path, trained_lenet),
            "compress": settings}
    configs = [{**base, "output_dir": str(tmp_path / f"out_w{i}")} for i in range(2)]
    with _cluster(tmp_path, "cw", configs) as procs:
        w0, w1 = _wait(procs, tmp_path, "cw")

    # The same search on both workers: every record (but its clock), the winner, the recipe, the bytes.
    def decisions(result):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in result["records"]]

    assert decisions(w0) == decisions(w1)
    assert w0["recipe"] == w1["recipe"]
    assert w0["flatbuffer_sha256"] == w1["flatbuffer_sha256"]
    assert w0["flatbuffer_bytes"] <= 40_000 < w0["records"][0]["size_bytes"]  # the budget is met, by cutting
    assert w0["winner"]["meets_budget"] and w0["winner"]["test_accuracy"] > 0.8
    assert {r["phase"] for r in w0["records"]} == {"baseline", "explore", "finish", "winner"}
    # Only the chief wrote; its folder holds the whole run (state, models, flatbuffers, report).
    assert _files(tmp_path / "out_w1") == []
    written = _files(tmp_path / "out_w0")
    assert {"compress_state.json", "winner.tflite", "recipe.json", "report.md"} <= set(written), written

    # Resuming: every worker reads the chief's folder (shared storage, here a copy for worker 1).
    shutil.copytree(tmp_path / "out_w0", tmp_path / "out_w1", dirs_exist_ok=True)
    before = _digests(tmp_path / "out_w1")
    with _cluster(tmp_path, "cw2", configs) as procs:
        r0, r1 = _wait(procs, tmp_path, "cw2")
    assert r0["flatbuffer_sha256"] == r1["flatbuffer_sha256"] == w0["flatbuffer_sha256"]
    assert decisions(r0) == decisions(r1) == decisions(w0)
    assert r0["compress_s"] < w0["compress_s"] / 2  # nothing trained again
    assert _digests(tmp_path / "out_w1") == before  # the other worker read, and wrote nothing
    print(f"MWMS compress: {w0['flatbuffer_bytes']} B, test accuracy {w0['winner']['test_accuracy']:.4f}, "
          f"worker import {w0['import_s']:.1f} s, compress {w0['compress_s']:.1f} s, resumed {r0['compress_s']:.1f} s")
