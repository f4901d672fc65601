"""Two worker processes on 127.0.0.1 under MultiWorkerMirroredStrategy (``worker.py`` is one worker).

Each worker is a separate Python process with one intra-op thread, bounded in time and
killed on the way out; the single-process reference runs in the test process. The
two-process tests share two launches (the ``two_workers`` fixture): a worker's imports and
cluster start cost more than most of what it checks. The agreement between workers is also
tested in one process, with the exchange faked.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

import kcompress as kc
from kcompress.compression.workers import Workers
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


def _reference(ds, model, prune_epochs):
    return Pipeline([Prune(0.75, epochs=prune_epochs, batch_size=64),
                     QuantizeAware(epochs=1, batch_size=64, learning_rate=1e-4),
                     Export("int8", calibration_samples=50), Evaluate(latency_runs=5)], name="single").run(
        ds, model=model, seed=0, verbose=0)


_COMPRESS = {"max_bytes": 40_000, "recovery_epochs": 1, "step_epochs": 1, "qat_epochs": 0, "step_fraction": 0.5,
             "batch_size": 128, "calibration_samples": 100, "verbose": 0, "seed": 0}


PRUNE_EPOCHS = 2  # the first launch is killed in the second, the restarted cluster resumes it


def _pipeline_config(tmp_path, i, weights, **more):
    """Worker i's Prune -> QuantizeAware -> int8 pipeline (both launches), backed up every epoch."""
    return {"mode": "pipeline", "train": 1200, "test": 400, "weights": weights, "prune_epochs": PRUNE_EPOCHS,
            "backup_dir": str(tmp_path / "backup"), "output_dir": str(tmp_path / f"out_w{i}"), **more}


def _kill_one_worker_mid_training(tmp_path, weights) -> dict:
    """Starts the pipeline on two workers; kills worker 1 once the chief has backed up the Prune stage's epoch 1.

    The peer cannot finish an all-reduce without it; the whole cluster restarts, as a cluster
    manager would do (here: worker 0 is killed too, instead of waiting out TensorFlow's health check).
    """
    marker = tmp_path / "backup" / "stage00_prune" / "chief" / "checkpoint"  # written by the chief after epoch 1
    configs = [_pipeline_config(tmp_path, i, weights, epoch_sleep=0.5) for i in range(2)]
    with _cluster(tmp_path, "first", configs) as procs:
        deadline = time.monotonic() + TIMEOUT_S
        while not marker.exists():
            assert time.monotonic() < deadline, "no backup was written in time"
            assert all(p.poll() is None for p, _, _ in procs), (tmp_path / "first_w1.log").read_text()[-3000:]
            time.sleep(0.05)
        os.killpg(procs[1][0].pid, signal.SIGKILL)  # worker 1 dies mid-training (epoch 2 sleeps 0.5 s first)
        os.killpg(procs[0][0].pid, signal.SIGKILL)
        procs[0][0].wait(10)
    return {"first_finished": (tmp_path / "first_w0.json").exists(),
            "first_backup": _files(tmp_path / "backup" / "stage00_prune" / "chief"),
            "first_outputs": _files(tmp_path / "out_w0") + _files(tmp_path / "out_w1")}


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory, trained_lenet, mnist):
    """Two launches of two workers, shared by the tests below (a launch costs ~10 s of imports per worker).

    The first runs the Prune -> QuantizeAware pipeline and loses worker 1 in the Prune stage's
    second epoch. In the second (the restarted cluster) each worker resumes that stage from its
    backup and finishes the pipeline, runs the other training stages and a Distiller fit, then
    ``kc.compress`` three times: afresh; with worker 1 reading an empty folder (different start
    states); resumed (worker 1 from a copy of the chief's folder) with a tighter budget and a
    time limit that only worker 1 has used up.
    """
    tmp_path = tmp_path_factory.mktemp("two_workers")
    weights = _weights_file(tmp_path, trained_lenet)
    killed = _kill_one_worker_mid_training(tmp_path, weights)
    ds = mnist.take(train=1200, test=400)
    configs = []
    for i in range(2):
        own, chief = str(tmp_path / f"compress_w{i}"), str(tmp_path / "compress_w0")
        calls = [{"output_dir": own, "settings": _COMPRESS},
                 {"output_dir": chief if i == 0 else str(tmp_path / "empty_w1"), "settings": _COMPRESS},
                 {"output_dir": own, "copy_from": chief,  # resumed: nothing trains
                  "settings": {**_COMPRESS, "max_bytes": 10_000, "time_limit": 1e-6 if i == 1 else 1e6}}]
        configs.append(_pipeline_config(tmp_path, i, weights, more_stages=True, compress_calls=calls,
                                        compress_train=1000, compress_test=200))
    with _cluster(tmp_path, "mw", configs) as procs:
        # A single-process run with the same global batch (64), while the workers start.
        single = _reference(ds, trained_lenet, PRUNE_EPOCHS)
        w0, w1 = _wait(procs, tmp_path, "mw", timeout=2 * TIMEOUT_S)
    return {"tmp": tmp_path, "single": single, "w0": w0, "w1": w1, **killed}


@pytest.mark.slow
def test_prune_qat_pipeline_and_distiller_on_two_workers(two_workers):
    tmp_path, single, w0, w1 = (two_workers[k] for k in ("tmp", "single", "w0", "w1"))

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
def test_killed_worker_resumes_from_backup(two_workers):
    w0, w1 = two_workers["w0"], two_workers["w1"]
    assert not two_workers["first_finished"]  # the first run never finished
    assert two_workers["first_backup"], "the chief's backup is missing"
    assert two_workers["first_outputs"] == []  # killed in its first stage: nothing exported yet
    # The restarted cluster resumed the Prune stage from the backup (its second epoch), not from scratch.
    for w in (w0, w1):
        assert w["log"][0]["stage"] == "Prune" and w["log"][0].get("resumed_at_epoch") == 1, w["log"]
        assert "resumed_at_epoch" not in w["log"][1]  # QuantizeAware started afresh
    # ...and ended where an uninterrupted single-process run ends (sparsity, accuracy, identical
    # weights on both workers: test_prune_qat_pipeline_and_distiller_on_two_workers).
    assert _same_weights(w0["weights"], w1["weights"], "pipeline_") < 1e-6
    assert w0["log"][0]["sparsity"] == pytest.approx(0.75, abs=0.01) and w0["accuracy"] > 0.9


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


def _decisions(call, *also_drop):
    """Every record of a compress call but its clock (and the keys in ``also_drop``)."""
    return [{k: v for k, v in r.items() if k not in ("seconds", *also_drop)} for r in call["records"]]


@pytest.mark.slow
def test_compress_on_two_workers_takes_the_same_decisions_and_only_the_chief_writes(two_workers):
    tmp_path = two_workers["tmp"]
    c0, c1 = two_workers["w0"]["compress"][0], two_workers["w1"]["compress"][0]
    # The same search on both workers: every record (but its clock), the winner, the recipe, the bytes.
    assert "error" not in c0 and "error" not in c1, (c0.get("message"), c1.get("message"))
    assert _decisions(c0) == _decisions(c1)
    assert c0["recipe"] == c1["recipe"]
    assert c0["flatbuffer_sha256"] == c1["flatbuffer_sha256"]
    assert c0["flatbuffer_bytes"] <= 40_000 < c0["records"][0]["size_bytes"]  # the budget is met, by cutting
    assert c0["winner"]["meets_budget"] and c0["winner"]["test_accuracy"] > 0.8
    assert {r["phase"] for r in c0["records"]} == {"baseline", "explore", "finish", "winner"}
    # Only the chief wrote; its folder holds the whole run (state, models, flatbuffers, report).
    assert c1["after"] == {}
    assert {"compress_state.json", "winner.tflite", "recipe.json", "report.md"} <= set(c0["after"]), c0["after"]

    # Resuming (the time-limit call below): every worker reads the chief's folder (shared storage,
    # here a copy for worker 1); both take up the same trajectory and finished candidates, train
    # nothing, and the other worker writes nothing.
    r0, r1 = two_workers["w0"]["compress"][2], two_workers["w1"]["compress"][2]
    assert set(r1["before"]) == set(c0["after"])
    assert _decisions(r0, "meets_budget") == _decisions(r1, "meets_budget") == _decisions(c0, "meets_budget")[:-1]
    assert r0["seconds"] < c0["seconds"] / 2  # nothing trained again
    assert r1["after"] == r1["before"]  # the other worker read, and wrote nothing
    assert _files(tmp_path / "compress_w1") == sorted(pathlib.Path(p).name for p in c0["after"])
    print(f"MWMS compress: {c0['flatbuffer_bytes']} B, test accuracy {c0['winner']['test_accuracy']:.4f}, "
          f"compress {c0['seconds']:.1f} s, resumed {r0['seconds']:.1f} s")


@pytest.mark.slow
def test_compress_fails_on_every_worker_when_they_start_from_different_states(two_workers):
    # The chief resumes from its folder, worker 1 sees an empty one: both refuse, nothing trains or hangs.
    d0, d1 = two_workers["w0"]["compress"][1], two_workers["w1"]["compress"][1]
    for call in (d0, d1):
        assert call["error"] == "ValueError", call.get("message")
        assert "start compress from different states (resumed, steps, finishes differ" in call["message"]
        assert "replica 0: {" in call["message"] and "replica 1: {" in call["message"]
    assert d0["after"] == d0["before"]  # the chief wrote nothing into the run it would have resumed
    assert not (two_workers["tmp"] / "empty_w1").exists()


@pytest.mark.slow
def test_a_time_limit_one_worker_used_up_stops_every_worker_at_the_same_step(two_workers):
    # A tighter budget would explore further; worker 1's clock is past its limit (worker 0's is not):
    # both stop before the next step, so both fail the budget alike, with the same records.
    t0, t1 = two_workers["w0"]["compress"][2], two_workers["w1"]["compress"][2]
    steps = len([r for r in two_workers["w0"]["compress"][0]["records"] if r["phase"] == "explore"])
    for call in (t0, t1):
        assert call["error"] == "BudgetError", call.get("message")
        assert "Exploration stopped because: time or trial limit reached" in call["message"]
        assert len([r for r in call["records"] if r["phase"] == "explore"]) == steps
    assert _decisions(t0) == _decisions(t1)


# ----------------------------------------------------------------------------- agreement, in one process

class _TwoWorkers(Workers):
    """This worker and a peer whose values are this one's updated by ``peer``: the exchange, faked."""

    def __init__(self, **peer):
        super().__init__(None)
        self.multi, self.peer = True, peer

    def gather(self, values):
        Workers().gather(values)  # the same checks of the values
        return [dict(values), {**values, **{k: v for k, v in self.peer.items() if k in values}}]


def test_workers_exchange_their_values_by_one_all_reduce(mirrored):
    # The real exchange, over the two logical CPUs: one row per replica.
    np.testing.assert_array_equal(Workers(mirrored).exchange([3, -1, 0]), [[3, -1, 0], [3, -1, 0]])
    one = Workers(mirrored)
    assert not one.multi and one.gather({"a": 3}) == [{"a": 3}]  # one process: nothing to exchange
    one.multi = True  # as a cluster would: encoded, all-reduced, decoded
    assert one.gather({"a": 3, "b": -2, "c": True}) == [{"a": 3, "b": -2, "c": 1}] * 2
    with pytest.raises(ValueError, match=r"b must be an int of magnitude below 16777216 to be exchanged, got 0.5"):
        one.gather({"a": 1, "b": 0.5})


def test_workers_agree_or_fail_together():
    _TwoWorkers().check_same({"resumed": 1, "steps": 3}, "unused")
    with pytest.raises(ValueError, match=r"^start: steps differ; replica 0: \{'resumed': 1, 'steps': 3\}; "
                                         r"replica 1: \{'resumed': 1, 'steps': 0\}$") as err:
        _TwoWorkers(steps=0).check_same({"resumed": 1, "steps": 3}, "start: {differ} differ; {workers}",
                                        cause=OSError("mine"))
    assert str(err.value.__cause__) == "mine"
    # A clock past its limit on one worker stops them all.
    assert _TwoWorkers(flag=1).any(False) and _TwoWorkers().any(True) and not _TwoWorkers().any(False)
    assert Workers().any(True) and not Workers(None).any(False)


@pytest.mark.parametrize("peer, differ", [
    ({"resumed": 1, "steps": 2, "finishes": 1}, "resumed, steps, finishes"),  # the peer resumes, this one not
    ({"time_limit": 1}, "time_limit"),  # one would all-reduce at every check, the other never
    ({"fingerprint": 7}, "fingerprint"),  # another model, dataset or settings
])
def test_compress_refuses_workers_that_start_differently_before_anything_runs(
        monkeypatch, tmp_path, trained_lenet, mnist_small, peer, differ):
    monkeypatch.setattr(importlib.import_module("kcompress.compression.search"), "Workers",
                        lambda strategy: _TwoWorkers(**peer))
    with pytest.raises(ValueError, match=f"start compress from different states \\({differ} differ; replica 0"):
        kc.compress(trained_lenet, mnist_small, max_bytes=40_000, output_dir=tmp_path, verbose=0)
    assert os.listdir(tmp_path) == []  # nothing measured, trained or written


def test_a_worker_that_cannot_resume_fails_every_worker(monkeypatch, tmp_path, trained_lenet, mnist_small):
    # This worker's folder holds another run; its peer's holds none. Alone, this worker would raise and
    # leave the peer waiting on its first all-reduce; instead both raise, this one with the reason.
    (tmp_path / "compress_state.json").write_text(json.dumps({"version": 1, "fingerprint": "0123", "steps": []}))
    monkeypatch.setattr(importlib.import_module("kcompress.compression.search"), "Workers",
                        lambda strategy: _TwoWorkers(failed=0))
    with pytest.raises(ValueError, match=r"different states \(failed differ") as err:
        kc.compress(trained_lenet, mnist_small, max_bytes=40_000, output_dir=tmp_path, verbose=0)
    assert "holds a compress run with another model, dataset or settings" in str(err.value.__cause__)
    # The same folder on every worker: they agree, and each raises the reason itself.
    monkeypatch.setattr(importlib.import_module("kcompress.compression.search"), "Workers",
                        lambda strategy: _TwoWorkers())
    with pytest.raises(ValueError, match="holds a compress run with another model, dataset or settings"):
        kc.compress(trained_lenet, mnist_small, max_bytes=40_000, output_dir=tmp_path, verbose=0)
