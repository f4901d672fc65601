"""One worker of the two-process MultiWorkerMirroredStrategy tests (run by test_multiworker.py).

    python tests/distributed/worker.py '<json config>'

The config names the cluster (ports, this task's index), what to run and where to put
what the test checks: ``result`` (a JSON file and a ``.npz`` of weights, test
instrumentation outside the pipeline's own ``output_dir``).
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import sys
import time

config = json.loads(sys.argv[1])
os.environ["TF_CONFIG"] = json.dumps({
    "cluster": {"worker": [f"127.0.0.1:{p}" for p in config["ports"]]},
    "task": {"type": "worker", "index": config["task"]},
})
t_start = time.perf_counter()

import numpy as np  # noqa: E402

import kcompress as kc  # noqa: E402
from kcompress._keras import keras, tf  # noqa: E402
from kcompress.pipeline import (  # noqa: E402
    Cluster,
    Distill,
    Evaluate,
    Export,
    Pipeline,
    Prune,
    PruneChannels,
    QuantizeAware,
)

tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)
strategy = kc.models.get_strategy("multiworker")
assert strategy.num_replicas_in_sync == len(config["ports"]), strategy.num_replicas_in_sync
ds = kc.data.load("mnist").take(train=config["train"], test=config["test"])
if config.get("tfrecord"):
    ds = kc.data.load_tfrecord(config["tfrecord"])
out = {"task": config["task"], "chief": kc.models.is_chief(strategy), "import_s": time.perf_counter() - t_start}
arrays = {}


def baseline(weights=True):
    with strategy.scope():
        model = kc.models.get("lenet5", ds.input_shape, ds.num_classes, seed=0)
    if weights and config.get("weights"):
        with np.load(config["weights"]) as f:
            model.set_weights([f[f"arr_{i}"] for i in range(len(f.files))])
    return model


if config.get("epoch_sleep"):  # the first launch of the resume test: slow epochs, so the test can kill a worker
    from kcompress.pipeline import stages as _stages

    class SlowEpochs(keras.callbacks.Callback):
        """Gives the test time to kill a worker mid-training."""

        def on_epoch_begin(self, epoch, logs=None):
            time.sleep(config["epoch_sleep"])

    fit = _stages.fit  # what every stage trains with (the name stages.py imported)

    def fit_slowly(*args, callbacks=None, **kwargs):
        return fit(*args, callbacks=[SlowEpochs(), *(callbacks or [])], **kwargs)

    _stages.fit = fit_slowly


if config.get("mode") == "pipeline":
    t0 = time.perf_counter()
    pipe = Pipeline([Prune(0.75, epochs=config["prune_epochs"], batch_size=64),
                     QuantizeAware(epochs=1, batch_size=64, learning_rate=1e-4),
                     Export("int8", calibration_samples=50), Evaluate(latency_runs=5)], name="mw")
    result = pipe.run(ds, model=baseline(), output_dir=config["output_dir"], strategy=strategy, seed=0, verbose=0,
                      backup_dir=config.get("backup_dir"))
    out["pipeline_s"] = time.perf_counter() - t0
    out["log"] = result.log
    out["accuracy"] = result.records[0]["accuracy"]
    out["flatbuffer_sha256"] = hashlib.sha256(result.flatbuffers["int8"]).hexdigest()
    arrays.update({f"pipeline_{i}": w for i, w in enumerate(result.model.get_weights())})

    if config.get("more_stages"):  # the other training stages, HintDistiller included
        t0 = time.perf_counter()
        more = Pipeline([Prune(0.5, epochs=1, batch_size=64, finetune=Distill(temperature=2.0, alpha=0.5, hint="fc2")),
                         PruneChannels(0.25, epochs=1, batch_size=64), Cluster(16, epochs=1, batch_size=64),
                         Export("float32"), Evaluate(latency_runs=5)], name="more")
        result = more.run(ds, model=baseline(), output_dir=config["output_dir"], strategy=strategy, seed=0, verbose=0)
        out["more_s"] = time.perf_counter() - t0
        out["more_log"] = result.log
        out["more_accuracy"] = result.records[0]["accuracy"]
        arrays.update({f"more_{i}": w for i, w in enumerate(result.model.get_weights())})

    # The Distiller, as users call it: built in the strategy's scope, fit on arrays.
    t0 = time.perf_counter()
    keras.utils.set_random_seed(1)
    with strategy.scope():
        teacher = baseline()
        student = kc.models.get("tiny_cnn", ds.input_shape, ds.num_classes, seed=5)
        distiller = kc.distillation.Distiller(student=student, teacher=teacher)
        distiller.compile(keras.optimizers.Adam(2e-3), metrics=["accuracy"], alpha=0.3, temperature=4.0)
    history = distiller.fit(ds.x_train, ds.y_train, batch_size=64, epochs=2, shuffle=False, verbose=0,
                            validation_split=0.0)
    out["distill_s"] = time.perf_counter() - t0
    out["distill_loss"] = [float(v) for v in history.history["loss"]]
    out["distill_accuracy"] = kc.evaluation.evaluate(student, ds, latency_runs=1)["accuracy"]
    arrays.update({f"student_{i}": w for i, w in enumerate(student.get_weights())})

if config.get("compress_calls"):  # kc.compress, called in turn: every worker searches, the chief writes
    import shutil

    from kcompress.compression.workers import Workers

    def digests(folder):
        files = [p for p in pathlib.Path(folder).rglob("*") if p.is_file()]
        return {str(p.relative_to(folder)): [hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns]
                for p in files}

    model = baseline()
    cds = ds.take(train=config.get("compress_train"), test=config.get("compress_test"))
    out["compress"] = []
    for call in config["compress_calls"]:
        if call.get("copy_from"):  # shared storage, here a copy: once every worker is here, the chief's files are whole
            Workers(strategy).gather({"barrier": 0})
            if not out["chief"]:
                shutil.copytree(call["copy_from"], call["output_dir"], dirs_exist_ok=True)
        done = {"before": digests(call["output_dir"])}
        t0 = time.perf_counter()
        try:
            res = kc.compress(model, cds, output_dir=call["output_dir"], strategy=strategy, **call["settings"])
        except (ValueError, kc.compression.BudgetError) as err:
            done.update(error=type(err).__name__, message=str(err), records=getattr(err, "records", None))
        else:
            done.update(records=res.records, winner=res.winner, recipe=res.recipe.get_config(),
                        flatbuffer_sha256=hashlib.sha256(res.flatbuffer).hexdigest(), flatbuffer_bytes=len(res.flatbuffer))
        done.update(seconds=time.perf_counter() - t0, after=digests(call["output_dir"]))
        out["compress"].append(done)

out["total_s"] = time.perf_counter() - t_start
np.savez(config["result"] + ".npz", **arrays)
with open(config["result"] + ".tmp", "w", encoding="utf-8") as f:
    json.dump(out, f, default=float)
os.replace(config["result"] + ".tmp", config["result"])
