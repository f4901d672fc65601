"""Reproduce the LeNet-5/MNIST quantization table: float32 baseline, post-training dynamic and static
int8, QAT int8, and pruned (80%) + sparsity-preserving QAT int8, dense and sparse.

    python experiments/quantize.py --dataset=mnist --model=lenet5 --epochs=10 --output_dir=runs/quantize

Every flatbuffer is measured in LiteRT over the whole test set (accuracy, top-1 agreement and
max logit error against the Keras model it came from, bytes, zlib bytes). Latencies are taken
in one process, interleaved over --latency_rounds rounds, both with LiteRT's default XNNPACK
delegate and with its builtin kernels; ratios are per round against the float32 flatbuffer.
All of it once per --seeds (default 0); the tables show mean ± std over them. Writes into
--output_dir: results.json, results.csv, report.md, flags.json, and per seed into seed<N>/ the
flatbuffers, the Keras models (.keras baseline, .h5 QAT models) and micro/ (the TFLite Micro
bundle of the QAT int8 model).
"""

from __future__ import annotations

import os
import time

from absl import app, flags, logging

import kcompress as kc
from kcompress.reporting import study

FLAGS = flags.FLAGS
_FLAG_NAMES: list[str] = []
# The published LeNet-5/MNIST quantization table these runs are compared with.
PUBLISHED = {"ptq_int8": 0.9725, "qat_int8": 0.9832}


def _own_flags():
    flags.DEFINE_string("baseline_model", None, "A trained .keras model to start from (else train one).")
    flags.DEFINE_integer("epochs", 10, "Baseline training epochs (when no --baseline_model).", lower_bound=1)
    flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate of the baseline.", lower_bound=0.0)
    flags.DEFINE_float("validation_split", 0.1, "Fraction of the training split held out for validation.")
    flags.DEFINE_integer("qat_epochs", 2, "QAT fine-tuning epochs.", lower_bound=1)
    flags.DEFINE_float("qat_learning_rate", 1e-4, "Adam learning rate of QAT fine-tuning.", lower_bound=0.0)
    flags.DEFINE_float("sparsity", 0.8, "Pruning target (fraction of zero kernel weights).")
    flags.DEFINE_integer("prune_epochs", 4, "Pruning fine-tuning epochs before QAT.", lower_bound=1)
    flags.DEFINE_float("prune_learning_rate", 5e-4, "Adam learning rate while pruning.", lower_bound=0.0)
    flags.DEFINE_bool("plain_qat_of_pruned", True, "Also run plain QAT on the pruned model, to show zeros regrow.")
    flags.DEFINE_integer("calibration_samples", 500, "Representative samples for static int8.", lower_bound=1)
    flags.DEFINE_integer("latency_rounds", 100, "Interleaved latency rounds.", lower_bound=1)


def define_flags():
    """Defines this script's flags (a function so tests can import and reuse them)."""
    _FLAG_NAMES[:] = study.define_flags(
        _own_flags, output_dir="runs/quantize", latency_runs=50,
        help_texts={"batch_size": "Batch size of every training run.",
                    "latency_runs": "Timed single-sample inferences per variant per round."})
    flags.adopt_module_key_flags(study)  # --help lists the shared flags too


def _qat(model, ds, args, preserve_sparsity=None):
    kc.keras.utils.set_random_seed(args["seed"])
    qat = kc.quantization.quantize_aware(model, preserve_sparsity=preserve_sparsity)
    kc.models.compile_classifier(qat, args["qat_learning_rate"])
    t0 = time.perf_counter()
    kc.models.fit(qat, ds, epochs=args["qat_epochs"], batch_size=args["batch_size"],
                  validation_split=args["validation_split"], restore_best=args["validation_split"] > 0)
    return qat, time.perf_counter() - t0


def _record(variant, flat, source, ds, out, args, **extra):
    path = kc.export.save(flat, os.path.join(out, f"{args['model']}_{variant}.tflite"))
    r = kc.evaluation.evaluate(flat, ds, latency_runs=10)
    agree = kc.evaluation.agreement(source, flat, ds)
    info = kc.export.describe(flat)
    logging.info("%s: LiteRT accuracy %.4f, agreement %.4f, %d bytes", variant, r["accuracy"],
                 agree["top1_agreement"], len(flat))
    return {"variant": variant, **r, "keras_accuracy": agree["keras_accuracy"],
            "top1_agreement": agree["top1_agreement"], "max_logit_error": agree["max_logit_error"],
            "zero_weight_fraction": 1 - info.nonzero_params / info.params if info.params else 0.0,
            "sparse_tensors": info.sparse_tensors, "file": os.path.basename(path), **extra}


def run(args: dict) -> list[dict]:
    """Runs every variant for every seed and writes the outputs; returns every seed's records."""
    with study.workspace(args) as out:
        records = study.records_over_seeds(args, _one_seed, out, name="quantize")
        micro = next(r for r in records if r["variant"] == "qat_int8")["micro"]  # the first seed's
        records = [{k: v for k, v in r.items() if k != "micro"} for r in records]
        summary = study.summarize(records)
        study.write_outputs(out, records, args, title=f"Quantization: {args['model']} on {args['dataset']}",
                            notes=_notes(summary, args, micro), columns=COLUMNS, summary=summary,
                            extra={"flags": {"micro": micro}})
        return records


def _one_seed(ds, args: dict) -> list[dict]:
    """One seed's study into args["output_dir"]; returns its records."""
    out = args["output_dir"]
    base, train_s = study.train_or_load(ds, args, args["seed"], args["validation_split"])
    base.save(os.path.join(out, "baseline.keras"))
    keras_row = {"variant": "keras_float32", **kc.evaluation.evaluate(base, ds, latency_runs=10)}
    keras_row.pop("latency_ms")

    flats, records = {}, []
    logging.info("[1/5] post-training: float32, dynamic range, static int8")
    calibration = ds.representative(min(args["calibration_samples"], len(ds.x_train)), seed=args["seed"])
    for variant, mode in (("float32", "float32"), ("ptq_dynamic", "dynamic"), ("ptq_int8", "int8")):
        flats[variant] = kc.export.to_tflite(base, mode, representative_data=calibration if mode == "int8" else None)
        records.append(_record(variant, flats[variant], base, ds, out, args))

    logging.info("[2/5] QAT int8")
    qat, qat_s = _qat(base, ds, args)
    qat.save(os.path.join(out, "qat.h5"))
    flats["qat_int8"] = kc.export.to_tflite(qat, "int8")
    records.append(_record("qat_int8", flats["qat_int8"], qat, ds, out, args, train_seconds=qat_s))

    logging.info("[3/5] prune to %.0f%%, then sparsity-preserving QAT", 100 * args["sparsity"])
    kc.keras.utils.set_random_seed(args["seed"])
    pruned = kc.pruning.prune(base, kc.pruning.ConstantSparsity(args["sparsity"]))
    kc.models.compile_classifier(pruned, args["prune_learning_rate"])
    t0 = time.perf_counter()
    kc.models.fit(pruned, ds, epochs=args["prune_epochs"], batch_size=args["batch_size"],
                  validation_split=args["validation_split"], callbacks=kc.pruning.callbacks(per_layer=False))
    prune_s = time.perf_counter() - t0
    stripped = kc.pruning.strip(pruned)
    pruned_sparsity = kc.quantization.kernel_sparsity(stripped)
    pqat, pqat_s = _qat(stripped, ds, args)  # preserve_sparsity by default: the kernels are mostly zeros
    pqat.save(os.path.join(out, "pruned_qat.h5"))
    for variant, sparse in (("pruned_qat_int8", False), ("pruned_qat_int8_sparse", True)):
        flats[variant] = kc.export.to_tflite(pqat, "int8", sparse=sparse)
        records.append(_record(variant, flats[variant], pqat, ds, out, args, train_seconds=prune_s + pqat_s,
                               kernel_sparsity_before_qat=pruned_sparsity))
    if args["plain_qat_of_pruned"]:
        plain, plain_s = _qat(stripped, ds, args, preserve_sparsity=False)
        flats["pruned_plain_qat_int8"] = kc.export.to_tflite(plain, "int8")
        records.append(_record("pruned_plain_qat_int8", flats["pruned_plain_qat_int8"], plain, ds, out, args,
                               train_seconds=prune_s + plain_s, kernel_sparsity_before_qat=pruned_sparsity))

    logging.info("[4/5] latency, interleaved (%d rounds x %d runs per variant)", args["latency_rounds"],
                 args["latency_runs"])
    timing = {}
    for resolver in ("auto", "builtin_without_default_delegates"):
        timing[resolver] = kc.evaluation.compare_latency(
            flats, ds.x_test, reference="float32", rounds=args["latency_rounds"],
            runs_per_round=args["latency_runs"], op_resolver=resolver)
    for r in records:
        xnn, ref = timing["auto"][r["variant"]], timing["builtin_without_default_delegates"][r["variant"]]
        r.update(latency_ms=xnn["latency_ms"], latency_ratio=xnn["latency_ratio"],
                 latency_ratio_p05=xnn["latency_ratio_p05"], latency_ratio_p95=xnn["latency_ratio_p95"],
                 latency_runtime=xnn["op_resolver"], latency_ms_builtin=ref["latency_ms"],
                 latency_ratio_builtin=ref["latency_ratio"], latency_ratio_builtin_p05=ref["latency_ratio_p05"],
                 latency_ratio_builtin_p95=ref["latency_ratio_p95"])

    logging.info("[5/5] TFLite Micro bundle of the QAT int8 model")
    bundle = kc.export.to_micro(flats["qat_int8"], os.path.join(out, "micro", f"{args['model']}_qat_int8"))

    ref_row = next(r for r in records if r["variant"] == "float32")
    for r in [keras_row, *records]:
        r["compression"] = ref_row["size_bytes"] / r["size_bytes"]
        r["size_fraction"] = r["size_bytes"] / ref_row["size_bytes"]
        if r["variant"] in PUBLISHED:
            r["published_accuracy"] = PUBLISHED[r["variant"]]
    records = [keras_row, *records]
    records[0]["train_seconds"] = train_s

    by = {r["variant"]: r for r in records}
    by["qat_int8"]["micro"] = {"ops": list(bundle.ops), "resolver_methods": list(bundle.resolver_methods),
                               "arena_bytes": bundle.arena_bytes, "arena_tensors_bytes": bundle.arena.tensors_bytes,
                               "arena_overhead_bytes": bundle.arena.overhead_bytes,
                               "header": os.path.relpath(bundle.header_path, out)}
    return records


COLUMNS = ("variant", "format", "accuracy", "keras_accuracy", "top1_agreement", "max_logit_error", "nonzero_params",
           "size_bytes", "gzip_bytes", "compression", "latency_ms", "latency_ratio", "latency_ratio_builtin")


def _notes(records, args, micro) -> str:
    by = {r["variant"]: r for r in records}
    lines = [
        f"{args['model']} on {args['dataset']}: baseline {args['epochs']} epochs, Adam {args['learning_rate']}, "
        f"batch {args['batch_size']}, validation split {args['validation_split']}, best validation epoch restored "
        f"(or --baseline_model); static int8 calibrated on {args['calibration_samples']} training images; QAT "
        f"{args['qat_epochs']} epochs at Adam {args['qat_learning_rate']}; pruning: ConstantSparsity("
        f"{args['sparsity']}) for {args['prune_epochs']} epochs at Adam {args['prune_learning_rate']}, stripped, "
        f"then QAT with preserve_sparsity (on by default for a mostly-zero model).",
        "",
        "'accuracy' is the flatbuffer in LiteRT over the test set; 'keras_accuracy' and 'top1_agreement' / "
        "'max_logit_error' compare it with the Keras model it was converted from (the baseline for post-training "
        "modes, the QAT model for QAT). 'size ratio' is float32 flatbuffer bytes / bytes.",
        "",
        "Published LeNet-5/MNIST table: post-training int8 97.25%, QAT int8 98.32%. Here: "
        f"post-training int8 {100 * by['ptq_int8']['accuracy']:.2f}%, QAT int8 {100 * by['qat_int8']['accuracy']:.2f}%.",
        "",
        "Latency: median of per-round medians of single-sample, single-thread invocations; all flatbuffers are "
        f"timed in one process, interleaved over {args['latency_rounds']} rounds of {args['latency_runs']} runs, "
        "so load from other processes hits every variant alike; 'latency ratio' is the median per-round ratio "
        "to the float32 flatbuffer with LiteRT's default XNNPACK delegate ('latency (ms)' is that runtime), "
        "'latency_ratio_builtin' the same with the builtin kernels (op_resolver='builtin_without_default_delegates'"
        ", closer to what TFLite Micro runs). XNNPACK does not take sparse int8 weights; that variant runs on the "
        "builtin kernels in both columns.",
        f"int8 / float32 latency: {by['ptq_int8']['latency_ratio']:.2f}x with XNNPACK "
        f"(5-95% of rounds {by['ptq_int8']['latency_ratio_p05']:.2f}-{by['ptq_int8']['latency_ratio_p95']:.2f}), "
        f"{by['ptq_int8']['latency_ratio_builtin']:.2f}x with the builtin kernels "
        f"({by['ptq_int8']['latency_ratio_builtin_p05']:.2f}-{by['ptq_int8']['latency_ratio_builtin_p95']:.2f}).",
    ]
    if "pruned_qat_int8" in by:
        dense, sparse = by["pruned_qat_int8"], by["pruned_qat_int8_sparse"]
        lines += ["", (
            f"Pruned then sparsity-preserving QAT: {100 * dense['zero_weight_fraction']:.1f}% of the int8 weights "
            f"are zero ({dense['nonzero_params']:,} nonzero of {dense['params']:,}); dense int8 {dense['size_bytes']:,}"
            f" bytes, sparse int8 {sparse['size_bytes']:,} bytes.")]
        if "pruned_plain_qat_int8" in by:
            lines[-1] += (f" Plain QAT of the same pruned model: {by['pruned_plain_qat_int8']['nonzero_params']:,} "
                          "nonzero weights (the zeros grow back).")
    lines += ["", (
        f"TFLite Micro bundle (seed{args['seeds'][0]}/micro/): ops {', '.join(micro['ops'])}; estimated arena "
        f"{micro['arena_bytes']:,} bytes ({micro['arena_tensors_bytes']:,} planned tensors + "
        f"{micro['arena_overhead_bytes']:,} overhead).")]
    return "\n".join(lines)


def main(argv):
    del argv
    args = study.flag_values(_FLAG_NAMES)
    records = run(args)
    print(kc.reporting.to_markdown(study.summarize(records), COLUMNS))
    print(f"Wrote {args['output_dir']}/results.json, report.md, results.csv and, per seed, seed<N>/ with the "
          "flatbuffers and micro/.")


if __name__ == "__main__":
    define_flags()
    app.run(main)
