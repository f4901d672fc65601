"""Reproduce the LeNet-5/MNIST pruning table: constant 50% and 80%, scheduled 50%->80%, channel pruning.

    python experiments/prune.py --output_dir=runs/prune

Each variant fine-tunes the same trained baseline (trained here, or loaded with
--baseline_model=runs/baseline/model.keras) for --finetune_epochs, then is
stripped and exported as dense and sparse float32 flatbuffers, all measured in
LiteRT. Writes results.json, results.csv, report.md, flags.json and the
flatbuffers into --output_dir.
"""

from __future__ import annotations

import json
import os
import platform
import time

from absl import app, flags, logging

import kcompress as kc

FLAGS = flags.FLAGS
_FLAG_NAMES: list[str] = []


def define_flags():
    """Defines this script's flags (a function so tests can import and reuse them)."""
    before = set(FLAGS)
    flags.DEFINE_enum("dataset", "mnist", sorted(kc.data.DATASETS), "Dataset.")
    flags.DEFINE_enum("model", "lenet5", sorted(kc.models.MODELS), "Zoo model.")
    flags.DEFINE_string("baseline_model", None, "A trained .keras model to start from (else train one).")
    flags.DEFINE_integer("epochs", 10, "Baseline training epochs (when no --baseline_model).", lower_bound=1)
    flags.DEFINE_integer("finetune_epochs", 8, "Fine-tuning epochs of every pruned variant.", lower_bound=1)
    flags.DEFINE_integer("schedule_end_epoch", 3, "Epoch by which the 50%->80% schedule reaches 80%.", lower_bound=1)
    flags.DEFINE_integer("batch_size", 256, "Batch size.", lower_bound=1)
    flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate of the baseline.", lower_bound=0.0)
    flags.DEFINE_float("finetune_learning_rate", 1e-3, "Adam learning rate of fine-tuning.", lower_bound=0.0)
    flags.DEFINE_float("channel_ratio", 0.5, "Fraction of filters/units removed by channel pruning.")
    flags.DEFINE_integer("seed", 0, "Seed.", lower_bound=0)
    flags.DEFINE_string("output_dir", "runs/prune", "Folder for results and artefacts.")
    flags.DEFINE_string("data_dir", None, "Folder with <dataset>.npz (else $KCOMPRESS_DATA_DIR, then tfds).")
    flags.DEFINE_integer("max_train", None, "Use only the first N training samples (quick runs).")
    flags.DEFINE_integer("max_test", None, "Evaluate on the first N test samples only (quick runs).")
    flags.DEFINE_integer("latency_runs", 500, "Timed single-sample inferences per flatbuffer.", lower_bound=1)
    flags.DEFINE_enum("strategy", "default", list(kc.models.STRATEGIES),
                      "tf.distribute strategy for training; multiworker reads TF_CONFIG, only the chief writes.")
    _FLAG_NAMES[:] = sorted(set(FLAGS) - before)


def _baseline(ds, args):
    if args["baseline_model"]:
        logging.info("Loading the baseline from %s", args["baseline_model"])
        return kc.keras.models.load_model(args["baseline_model"], compile=False)
    kc.keras.utils.set_random_seed(args["seed"])
    model = kc.models.get(args["model"], ds.input_shape, ds.num_classes, seed=args["seed"])
    kc.models.compile_classifier(model, args["learning_rate"])
    kc.models.fit(model, ds, epochs=args["epochs"], batch_size=args["batch_size"], restore_best=True)
    return model


def _measure(name, keras_model, ds, out, args, sparse_too=True, extra=None):
    """Keras accuracy plus dense (and sparse) float32 flatbuffers measured in LiteRT."""
    keras_acc = kc.evaluation.evaluate(keras_model, ds, latency_runs=20)["accuracy"]
    report = kc.pruning.sparsity(keras_model)
    rows = []
    for sparse in (False, True) if sparse_too else (False,):
        flat = kc.export.to_tflite(keras_model, "float32", sparse=sparse, verbose=False)
        kind = "sparse" if sparse else "dense"
        kc.export.save(flat, os.path.join(out, f"{name}_{kind}_float32.tflite"))
        r = kc.evaluation.evaluate(flat, ds, latency_runs=args["latency_runs"])
        rows.append({"variant": f"{name}", "flatbuffer": f"float32 {kind}", "keras_accuracy": keras_acc, **r,
                     "sparsity": report.prunable, **(extra or {})})
    return rows


def run(args: dict) -> list[dict]:
    """Runs every variant and writes the outputs; returns the records."""
    # Every worker of a multi-worker cluster runs this: models are built in the strategy's scope,
    # and only the chief writes args["output_dir"] (the others write into a temporary folder).
    strategy = kc.models.get_strategy(args.get("strategy", "default"))
    with kc.models.writable_dir(args["output_dir"], strategy) as out, strategy.scope():
        return _run({**args, "output_dir": out})


def _run(args: dict) -> list[dict]:
    out = args["output_dir"]
    os.makedirs(out, exist_ok=True)
    ds = kc.data.load(args["dataset"], data_dir=args["data_dir"])
    if args["max_train"] or args["max_test"]:
        ds = ds.take(train=args["max_train"], test=args["max_test"])
    base = _baseline(ds, args)
    records = _measure("baseline", base, ds, out, args, sparse_too=False)

    spe = kc.pruning.steps_per_epoch(len(ds.x_train), args["batch_size"], validation_split=0.1)
    schedules = {
        "constant_50": kc.pruning.ConstantSparsity(0.5),
        "constant_80": kc.pruning.ConstantSparsity(0.8),
        "scheduled_50_80": kc.pruning.PolynomialDecay.from_epochs(
            0.5, 0.8, begin_epoch=0, end_epoch=args["schedule_end_epoch"], steps_per_epoch=spe),
    }
    for i, (name, schedule) in enumerate(schedules.items(), start=1):
        logging.info("[%d/%d] %s: %r", i, len(schedules) + 1, name, schedule)
        kc.keras.utils.set_random_seed(args["seed"])
        pruned = kc.pruning.prune(base, schedule)
        kc.models.compile_classifier(pruned, args["finetune_learning_rate"])
        t0 = time.perf_counter()
        kc.models.fit(pruned, ds, epochs=args["finetune_epochs"], batch_size=args["batch_size"],
                      callbacks=kc.pruning.callbacks(per_layer=False))
        stripped = kc.pruning.strip(pruned)
        records += _measure(name, stripped, ds, out, args, extra={"finetune_seconds": time.perf_counter() - t0,
                                                                   "target_sparsity": schedule.final_sparsity})

    name = f"channels_{int(round(100 * args['channel_ratio']))}"
    logging.info("[%d/%d] %s", len(schedules) + 1, len(schedules) + 1, name)
    kc.keras.utils.set_random_seed(args["seed"])
    slim = kc.pruning.prune_channels(base, args["channel_ratio"])
    kc.models.compile_classifier(slim, args["finetune_learning_rate"])
    kc.models.fit(slim, ds, epochs=args["finetune_epochs"], batch_size=args["batch_size"], restore_best=True)
    records += _measure(name, slim, ds, out, args, sparse_too=False)

    # Time every flatbuffer against the others, interleaved in this process: block-wise timings on a
    # shared machine can differ by 40% for identical graphs.
    flats = {}
    for r in records:
        kind = r["flatbuffer"].split()[1]
        with open(os.path.join(out, f"{r['variant']}_{kind}_float32.tflite"), "rb") as f:
            flats[f"{r['variant']}/{kind}"] = f.read()
    timing = kc.evaluation.compare_latency(flats, ds.x_test[:1], reference="baseline/dense", rounds=20)
    for r in records:
        r["latency_ms"] = timing[f"{r['variant']}/{r['flatbuffer'].split()[1]}"]["latency_ms"]
    ref = records[0]
    for r in records:
        r["compression"] = ref["size_bytes"] / r["size_bytes"]
        r["gzip_compression"] = ref["size_bytes"] / r["gzip_bytes"]
        r["latency_ratio"] = r["latency_ms"] / ref["latency_ms"]
        r["macs_ratio"] = r["macs"] / ref["macs"]

    resolved = dict(args)
    resolved["machine"] = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    kc.export.write_atomic(os.path.join(out, "flags.json"), json.dumps(resolved, indent=2) + "\n")
    columns = ("variant", "flatbuffer", "keras_accuracy", "accuracy", "sparsity", "nonzero_params", "size_bytes",
               "gzip_bytes", "compression", "macs", "latency_ms", "latency_ratio")
    notes = (
        f"{args['model']} on {args['dataset']}; each variant fine-tunes the same baseline for "
        f"{args['finetune_epochs']} epochs (Adam {args['finetune_learning_rate']}, batch {args['batch_size']}); "
        f"the 50%->80% schedule reaches 80% at epoch {args['schedule_end_epoch']}. 'accuracy' is the flatbuffer "
        "in LiteRT over the test set, 'keras_accuracy' the stripped Keras model; sparsity is over prunable "
        "kernels; size ratio and latency ratio are against the baseline's dense float32 flatbuffer; latencies are "
        "medians of single-sample, single-thread LiteRT invocations, all flatbuffers timed interleaved in one process."
    )
    kc.reporting.write_results(out, records, resolved, title=f"Pruning: {args['model']} on {args['dataset']}",
                               notes=notes, columns=columns)
    return records


def main(argv):
    del argv
    args = {name: FLAGS[name].value for name in _FLAG_NAMES}
    records = run(args)
    columns = ("variant", "flatbuffer", "keras_accuracy", "accuracy", "sparsity", "size_bytes", "gzip_bytes",
               "compression", "macs", "latency_ms", "latency_ratio")
    print(kc.reporting.to_markdown(records, columns))
    print(f"Wrote {args['output_dir']}/results.json, report.md, results.csv and the flatbuffers.")


if __name__ == "__main__":
    define_flags()
    app.run(main)
