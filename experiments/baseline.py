"""Train a zoo model, then measure it as Keras and as float32 / dynamic / float16 / int8 flatbuffers.

    python experiments/baseline.py --dataset=mnist --model=lenet5 --epochs=10 \
        --output_dir=runs/baseline

Writes into --output_dir: results.json, results.csv, report.md, flags.json,
model.keras and one .tflite per flatbuffer variant.
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
    flags.DEFINE_enum("dataset", "mnist", sorted(kc.data.DATASETS), "Dataset to train on.")
    flags.DEFINE_enum("model", "lenet5", sorted(kc.models.MODELS), "Zoo model to train.")
    flags.DEFINE_integer("epochs", 10, "Training epochs.", lower_bound=1)
    flags.DEFINE_integer("batch_size", 256, "Training batch size.", lower_bound=1)
    flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate.", lower_bound=0.0)
    flags.DEFINE_float("validation_split", 0.1, "Fraction of the training split held out for validation.")
    flags.DEFINE_integer("seed", 0, "Seed for weights, shuffling and calibration samples.", lower_bound=0)
    flags.DEFINE_string("output_dir", "runs/baseline", "Folder for results and artefacts.")
    flags.DEFINE_string("data_dir", None, "Folder with <dataset>.npz (else $KCOMPRESS_DATA_DIR, then tfds).")
    flags.DEFINE_integer("calibration_samples", 500, "Representative samples for int8 calibration.", lower_bound=1)
    flags.DEFINE_integer("max_train", None, "Use only the first N training samples (quick runs).")
    flags.DEFINE_integer("max_test", None, "Evaluate on the first N test samples only (quick runs).")
    flags.DEFINE_integer("latency_runs", 300, "Timed single-sample inferences per variant.", lower_bound=1)
    flags.DEFINE_bool("restore_best", True, "End with the weights of the best validation-accuracy epoch.")
    flags.DEFINE_enum("strategy", "default", list(kc.models.STRATEGIES),
                      "tf.distribute strategy for training; multiworker reads TF_CONFIG, only the chief writes.")
    _FLAG_NAMES[:] = sorted(set(FLAGS) - before)


def run(output_dir: str, dataset: str, model: str, epochs: int, batch_size: int, learning_rate: float,
        validation_split: float, seed: int, data_dir=None, calibration_samples=500, max_train=None,
        max_test=None, latency_runs=300, strategy="default", restore_best=True, flag_values=None) -> list[dict]:
    """Runs the baseline and writes its outputs; returns the records.

    Under ``strategy="multiworker"`` every worker runs this; only the chief writes ``output_dir``.
    """
    with kc.models.writable_dir(output_dir, kc.models.get_strategy(strategy)) as out:
        return _run(out, dataset, model, epochs, batch_size, learning_rate, validation_split, seed, data_dir,
                    calibration_samples, max_train, max_test, latency_runs, strategy, restore_best, flag_values)


def _run(output_dir, dataset, model, epochs, batch_size, learning_rate, validation_split, seed, data_dir,
         calibration_samples, max_train, max_test, latency_runs, strategy, restore_best, flag_values):
    kc.keras.utils.set_random_seed(seed)
    ds = kc.data.load(dataset, data_dir=data_dir)
    if max_train or max_test:
        ds = ds.take(train=max_train, test=max_test)
    with kc.models.get_strategy(strategy).scope():
        net = kc.models.get(model, ds.input_shape, ds.num_classes, seed=seed)
        kc.models.compile_classifier(net, learning_rate)
    t0 = time.perf_counter()
    kc.models.fit(net, ds, epochs=epochs, batch_size=batch_size, validation_split=validation_split,
                   restore_best=restore_best and validation_split > 0)
    train_s = time.perf_counter() - t0
    os.makedirs(output_dir, exist_ok=True)
    net.save(os.path.join(output_dir, "model.keras"))

    records = [{"variant": "keras", **kc.evaluation.evaluate(net, ds, latency_runs=latency_runs)}]
    calibration = ds.representative(min(calibration_samples, ds.num_train), seed=seed)
    for mode in ("float32", "dynamic", "float16", "int8"):
        logging.info("Exporting %s", mode)
        flat = kc.export.to_tflite(net, mode, representative_data=calibration if mode == "int8" else None)
        kc.export.save(flat, os.path.join(output_dir, f"{model}_{mode}.tflite"))
        record = {"variant": f"tflite_{mode}", **kc.evaluation.evaluate(flat, ds, latency_runs=latency_runs)}
        agree = kc.evaluation.agreement(net, flat, ds)
        record["top1_agreement"] = agree["top1_agreement"]
        records.append(record)
    records = kc.reporting.add_ratios(records, reference="tflite_float32")
    records[0]["train_seconds"] = train_s

    resolved = dict(flag_values or {}, dataset=dataset, model=model, epochs=epochs, batch_size=batch_size,
                    learning_rate=learning_rate, validation_split=validation_split, seed=seed)
    resolved["machine"] = f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_implementation()} {platform.python_version()}"
    resolved["tensorflow"] = kc.tf.__version__
    kc.export.write_atomic(os.path.join(output_dir, "flags.json"), json.dumps(resolved, indent=2) + "\n")
    notes = (
        f"{model} on {dataset}: {epochs} epochs, Adam {learning_rate}, batch {batch_size}, "
        f"validation split {validation_split}, seed {seed}"
        f"{', best validation epoch restored' if restore_best else ''}; trained in {train_s:.0f} s. "
        "Flatbuffer accuracy measured in the LiteRT interpreter over the whole test set; "
        "latency is the median of single-sample, single-thread invocations. "
        "Size ratio and latency ratio are relative to the float32 flatbuffer."
    )
    kc.reporting.write_results(output_dir, records, resolved, title=f"Baseline: {model} on {dataset}", notes=notes)
    return records


def main(argv):
    del argv
    values = {name: FLAGS[name].value for name in _FLAG_NAMES}
    records = run(FLAGS.output_dir, FLAGS.dataset, FLAGS.model, FLAGS.epochs, FLAGS.batch_size,
                  FLAGS.learning_rate, FLAGS.validation_split, FLAGS.seed, FLAGS.data_dir,
                  FLAGS.calibration_samples, FLAGS.max_train, FLAGS.max_test, FLAGS.latency_runs,
                  FLAGS.strategy, FLAGS.restore_best, values)
    print(kc.reporting.to_markdown(records, columns=(*kc.reporting.DEFAULT_COLUMNS, "top1_agreement")))
    print(f"Wrote {FLAGS.output_dir}/results.json, report.md, results.csv and the flatbuffers.")


if __name__ == "__main__":
    define_flags()
    app.run(main)
