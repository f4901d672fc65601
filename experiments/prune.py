"""Reproduce the LeNet-5/MNIST pruning table: constant 50% and 80%, scheduled 50%->80%, channel pruning.

    python experiments/prune.py --output_dir=runs/prune

Each variant fine-tunes the same trained baseline (trained here, or loaded with
--baseline_model=runs/baseline/model.keras) for --finetune_epochs, then is
stripped and exported as dense and sparse float32 flatbuffers, all measured in
LiteRT; once per --seeds (default 0), the tables showing mean ± std over them.
Writes results.json, results.csv, report.md, flags.json into --output_dir and the
flatbuffers of seed N into --output_dir/seedN/.
"""

from __future__ import annotations

import os
import time

from absl import app, flags, logging

import kcompress as kc
from kcompress.reporting import study

FLAGS = flags.FLAGS
_FLAG_NAMES: list[str] = []
_COLUMNS = ("variant", "flatbuffer", "keras_accuracy", "accuracy", "sparsity", "nonzero_params", "size_bytes",
            "gzip_bytes", "compression", "macs", "latency_ms", "latency_ratio")


def _own_flags():
    flags.DEFINE_string("baseline_model", None, "A trained .keras model to start from (else train one).")
    flags.DEFINE_integer("epochs", 10, "Baseline training epochs (when no --baseline_model).", lower_bound=1)
    flags.DEFINE_integer("finetune_epochs", 8, "Fine-tuning epochs of every pruned variant.", lower_bound=1)
    flags.DEFINE_integer("schedule_end_epoch", 3, "Epoch by which the 50%->80% schedule reaches 80%.", lower_bound=1)
    flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate of the baseline.", lower_bound=0.0)
    flags.DEFINE_float("finetune_learning_rate", 1e-3, "Adam learning rate of fine-tuning.", lower_bound=0.0)
    flags.DEFINE_float("channel_ratio", 0.5, "Fraction of filters/units removed by channel pruning.")


def define_flags():
    """Defines this script's flags (a function so tests can import and reuse them)."""
    _FLAG_NAMES[:] = study.define_flags(_own_flags, output_dir="runs/prune", latency_runs=500)
    flags.adopt_module_key_flags(study)  # --help lists the shared flags too


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
    """Runs every variant for every seed and writes the outputs; returns every seed's records."""
    with study.workspace(args) as out:
        records = study.records_over_seeds(args, _one_seed, out, name="prune")
        notes = (
            f"{args['model']} on {args['dataset']}; each variant fine-tunes the same baseline for "
            f"{args['finetune_epochs']} epochs (Adam {args['finetune_learning_rate']}, batch {args['batch_size']}); "
            f"the 50%->80% schedule reaches 80% at epoch {args['schedule_end_epoch']}. 'accuracy' is the flatbuffer "
            "in LiteRT over the test set, 'keras_accuracy' the stripped Keras model; sparsity is over prunable "
            "kernels; size ratio and latency ratio are against the baseline's dense float32 flatbuffer; latencies are "
            "medians of single-sample, single-thread LiteRT invocations, all flatbuffers of a seed timed interleaved "
            "in one process. Artefacts of seed N: seedN/."
        )
        study.write_outputs(out, records, args, title=f"Pruning: {args['model']} on {args['dataset']}", notes=notes,
                            columns=_COLUMNS, by=("variant", "flatbuffer"))
        return records


def _one_seed(ds, args: dict) -> list[dict]:
    """One seed's study into args["output_dir"]; returns its records."""
    out = args["output_dir"]
    base, _ = study.train_or_load(ds, args, args["seed"])
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

    return records


def main(argv):
    del argv
    args = study.flag_values(_FLAG_NAMES)
    records = run(args)
    columns = ("variant", "flatbuffer", "keras_accuracy", "accuracy", "sparsity", "size_bytes", "gzip_bytes",
               "compression", "macs", "latency_ms", "latency_ratio")
    print(kc.reporting.to_markdown(study.summarize(records, ("variant", "flatbuffer")), columns))
    print(f"Wrote {args['output_dir']}/results.json, report.md, results.csv and the flatbuffers.")


if __name__ == "__main__":
    define_flags()
    app.run(main)
