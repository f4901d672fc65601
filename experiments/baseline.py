"""Train a zoo model, then measure it as Keras and as float32 / dynamic / float16 / int8 flatbuffers.

    python experiments/baseline.py --dataset=mnist --model=lenet5 --epochs=10 \
        --output_dir=runs/baseline

Once per --seeds (default 0); the tables show mean ± std over them. Writes into
--output_dir: results.json, results.csv, report.md, flags.json, and per seed into
seed<N>/ model.keras and one .tflite per flatbuffer variant.
"""

from __future__ import annotations

import os
import time

from absl import app, flags, logging

import kcompress as kc
from kcompress.reporting import study

FLAGS = flags.FLAGS
_FLAG_NAMES: list[str] = []


def _own_flags():
    flags.DEFINE_integer("epochs", 10, "Training epochs.", lower_bound=1)
    flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate.", lower_bound=0.0)
    flags.DEFINE_float("validation_split", 0.1, "Fraction of the training split held out for validation.")
    flags.DEFINE_integer("calibration_samples", 500, "Representative samples for int8 calibration.", lower_bound=1)
    flags.DEFINE_bool("restore_best", True, "End with the weights of the best validation-accuracy epoch.")


def define_flags():
    """Defines this script's flags (a function so tests can import and reuse them)."""
    _FLAG_NAMES[:] = study.define_flags(
        _own_flags, output_dir="runs/baseline", latency_runs=300,
        help_texts={"dataset": "Dataset to train on.", "model": "Zoo model to train.",
                    "batch_size": "Training batch size.", "latency_runs": "Timed single-sample inferences per variant.",
                    "seeds": "Seeds for weights, shuffling and calibration samples: one run each; the tables show "
                             "mean ± std over them (--seed=N is --seeds=N)."})
    flags.adopt_module_key_flags(study)  # --help lists the shared flags too


def run(args: dict) -> list[dict]:
    """Trains and measures the model once per seed and writes the outputs; returns every seed's records.

    Under ``strategy="multiworker"`` every worker runs this; only the chief writes ``output_dir``.
    """
    seeds = study.parse_seeds(args["seeds"])
    with study.workspace(args) as out:
        records = study.records_over_seeds(args, _one_seed, out, name="baseline")
        a = args
        train_s = [r["train_seconds"] for r in records if "train_seconds" in r]
        notes = (
            f"{a['model']} on {a['dataset']}: {a['epochs']} epochs, Adam {a['learning_rate']}, batch {a['batch_size']}, "
            f"validation split {a['validation_split']}, seeds {', '.join(map(str, seeds))}"
            f"{', best validation epoch restored' if a['restore_best'] else ''}; trained in "
            f"{', '.join(f'{t:.0f}' for t in train_s)} s. "
            "Flatbuffer accuracy measured in the LiteRT interpreter over the whole test set; "
            "latency is the median of single-sample, single-thread invocations. "
            "Size ratio and latency ratio are relative to the float32 flatbuffer. The model and flatbuffers of seed N "
            "are in seedN/."
        )
        study.write_outputs(out, records, args, title=f"Baseline: {a['model']} on {a['dataset']}", notes=notes,
                            columns=(*kc.reporting.DEFAULT_COLUMNS, "top1_agreement"))
        return records


def _one_seed(ds, args) -> list[dict]:
    """One seed's training, export and measurements into args["output_dir"]; returns its records."""
    output_dir = args["output_dir"]
    seed, model, latency_runs = args["seed"], args["model"], args["latency_runs"]
    kc.keras.utils.set_random_seed(seed)
    net = kc.models.get(model, ds.input_shape, ds.num_classes, seed=seed)  # in the strategy's scope (workspace)
    kc.models.compile_classifier(net, args["learning_rate"])
    t0 = time.perf_counter()
    kc.models.fit(net, ds, epochs=args["epochs"], batch_size=args["batch_size"],
                  validation_split=args["validation_split"],
                  restore_best=args["restore_best"] and args["validation_split"] > 0)
    train_s = time.perf_counter() - t0
    net.save(os.path.join(output_dir, "model.keras"))

    records = [{"variant": "keras", **kc.evaluation.evaluate(net, ds, latency_runs=latency_runs)}]
    calibration = ds.representative(min(args["calibration_samples"], ds.num_train), seed=seed)
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
    return records


def main(argv):
    del argv
    args = study.flag_values(_FLAG_NAMES)
    records = run(args)
    print(kc.reporting.to_markdown(study.summarize(records), columns=(*kc.reporting.DEFAULT_COLUMNS, "top1_agreement")))
    print(f"Wrote {FLAGS.output_dir}/results.json, report.md, results.csv and, per seed, seed<N>/ with the model and "
          "flatbuffers.")


if __name__ == "__main__":
    define_flags()
    app.run(main)
