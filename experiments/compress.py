"""Compress to a budget: the smallest int8 flatbuffer of a trained model that keeps its accuracy.

    python experiments/compress.py                                # LeNet-5 / MNIST, max_accuracy_drop=0.002
    python experiments/compress.py --max_bytes=16384
    python experiments/compress.py --dataset=fashion_mnist --max_accuracy_drop=0.01

Trains the baseline once (or loads --baseline_model), measures its sensitivity
(each channel group cut alone), runs ``kcompress.compress`` with the budget and
the first seed, then re-runs the recipe it found with the other ``--seeds`` and
reports the winner's test accuracy and bytes as mean ± std over all seeds. Every
decision uses the validation split; the test set only reports. Writes into
``--output_dir``: results.json, results.csv, report.md, flags.json (with the
machine), sensitivity.png, pareto.png, recipe.json, winner.tflite and the
search's own folder (``search/``, which a re-run resumes from).

``--strategy=mirrored`` trains on every local device; ``--strategy=multiworker`` is
run by every worker of a cluster (TF_CONFIG), which train together and take the same
decisions. Every worker reads ``--output_dir`` (shared storage) to re-use the baseline,
the replays and the search; only the chief writes it.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
from absl import app, flags, logging

import kcompress as kc
from kcompress.pipeline import Pipeline, Train
from kcompress.reporting import study

FLAGS = flags.FLAGS
_FLAG_NAMES: list[str] = []


def _own_flags():
    flags.DEFINE_string("baseline_model", None, "A trained .keras model to compress instead of training --model.")
    flags.DEFINE_integer("epochs", 10, "Training epochs of the baseline.", lower_bound=1)
    flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate of the baseline training.")
    flags.DEFINE_integer("max_bytes", None, "Budget: int8 flatbuffer bytes.", lower_bound=1)
    flags.DEFINE_float("max_accuracy_drop", 0.002, "Budget: validation accuracy drop allowed (fraction; "
                       "negative for none).")
    flags.DEFINE_float("min_accuracy", None, "Budget: validation accuracy to reach (fraction).")
    flags.DEFINE_integer("max_macs", None, "Budget: multiply-accumulates per inference.", lower_bound=1)
    flags.DEFINE_integer("max_arena_bytes", None, "Budget: TFLite Micro arena bytes.", lower_bound=1)
    flags.DEFINE_integer("recovery_epochs", 10, "Distillation epochs of each finished candidate.", lower_bound=1)
    flags.DEFINE_integer("step_epochs", 1, "Distillation epochs after each search step.", lower_bound=1)
    flags.DEFINE_integer("qat_epochs", 2, "QAT epochs (0: post-training quantization only).", lower_bound=0)
    flags.DEFINE_float("step_fraction", 0.25, "Fraction of the weight bytes each search step removes.")
    flags.DEFINE_float("temperature", 2.0, "Distillation temperature.")
    flags.DEFINE_float("alpha", 0.5, "Distillation hard-label weight.")
    flags.DEFINE_integer("compress_batch_size", 128, "Batch size of the recoveries.", lower_bound=1)
    flags.DEFINE_float("time_limit", None, "Seconds after which the search stops exploring / finishing.")
    flags.DEFINE_string("search_dir", None, "Folder of the kc.compress search (default <output_dir>/search); a "
                        "search of the same model and settings with another budget is re-used from it.")
    flags.DEFINE_string("save_recipe", None, "Also write the recipe with what it was found for (model, dataset, "
                        "budget, command, result) to this file, e.g. experiments/recipes/<model>_<dataset>.json, "
                        "which compare.py replays as its compressed_budget row.")


def define_flags():
    """Defines this script's flags (a function so tests can import and reuse them)."""
    _FLAG_NAMES[:] = study.define_flags(
        _own_flags, output_dir="runs/compress", seeds=["0", "1", "2"],
        help_texts={"model": "Model to compress (trained first).", "batch_size": "Batch size of the baseline training.",
                    "seeds": "The first seed searches; the recipe found is re-run with the others."})
    flags.adopt_module_key_flags(study)  # --help lists the shared flags too


def _baseline(args, ds, out, strategy):
    """The baseline: --baseline_model, the one in --output_dir made with these flags, or trained.

    Every worker reads ``args["output_dir"]`` (so all re-use it or all train); ``out`` is where
    this process writes.
    """
    if args["baseline_model"]:
        return kc.keras.models.load_model(args["baseline_model"], compile=False)
    path = os.path.join(args["output_dir"], "baseline.keras")
    meta_path = os.path.join(args["output_dir"], "baseline.json")
    key = {k: args[k] for k in ("dataset", "model", "epochs", "batch_size", "learning_rate", "max_train")}
    key["seed"] = int(args["seeds"][0])
    if os.path.isfile(path) and os.path.isfile(meta_path):
        with open(meta_path, encoding="utf-8") as f:
            if json.load(f) == key:
                logging.info("Re-using the baseline in %s", path)
                return kc.keras.models.load_model(path, compile=False)
    kc.keras.utils.set_random_seed(key["seed"])
    model = kc.models.get(args["model"], ds.input_shape, ds.num_classes, seed=key["seed"])
    print(f"==> training the baseline {args['model']} for {args['epochs']} epochs", flush=True)
    result = Pipeline([Train(args["epochs"], args["batch_size"], args["learning_rate"])], name="baseline").run(
        ds, model=model, strategy=strategy)
    path = os.path.join(out, "baseline.keras")
    result.model.save(path + ".tmp.keras")
    os.replace(path + ".tmp.keras", path)
    kc.export.write_atomic(os.path.join(out, "baseline.json"), json.dumps(key))
    return result.model


def _budget(args) -> dict:
    drop = args["max_accuracy_drop"]
    return {"max_bytes": args["max_bytes"], "max_accuracy_drop": None if drop is None or drop < 0 else drop,
            "min_accuracy": args["min_accuracy"], "max_macs": args["max_macs"],
            "max_arena_bytes": args["max_arena_bytes"]}


def _replay(recipe, ds, baseline, seed, args, out, strategy) -> dict:
    """Re-runs the found recipe with another seed; returns its int8 record (test accuracy in LiteRT)."""
    path = os.path.join(args["output_dir"], f"replay_seed{seed}.json")
    fingerprint = json.dumps(recipe.get_config(), sort_keys=True)
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            done = json.load(f)
        if done.get("recipe") == fingerprint:
            return done["record"]
    print(f"==> re-running the recipe with seed {seed}", flush=True)
    t0 = time.perf_counter()
    result = recipe.run(ds, model=baseline, seed=seed, strategy=strategy)
    flat = next(iter(result.flatbuffers.values()))
    x_val, y_val = kc.pruning.validation_split(ds)
    val = float(np.mean(np.argmax(kc.evaluation.litert.predict(flat, x_val), -1) == y_val))
    record = {"seed": seed, "size_bytes": len(flat), "test_accuracy": result.records[0]["accuracy"],
              "val_accuracy": val, "seconds": round(time.perf_counter() - t0, 1)}
    kc.export.write_atomic(os.path.join(out, os.path.basename(path)),
                           json.dumps({"recipe": fingerprint, "record": record}, indent=1))
    return record


def _strategy(args):
    """``(tf.distribute strategy, the same or None for "default")`` of ``args["strategy"]``."""
    name = args.get("strategy") or "default"
    if name not in kc.models.STRATEGIES:
        raise ValueError(f"--strategy must be one of {list(kc.models.STRATEGIES)}, got {name!r}.")
    strategy = kc.models.get_strategy(name)
    return strategy, None if name == "default" else strategy


def run(args: dict) -> dict:
    """Trains (or re-uses) the baseline, searches, replays the other seeds and writes the outputs.

    Under ``strategy="multiworker"`` every worker runs this with the same flags; only the chief writes.
    """
    seeds = study.parse_seeds(args["seeds"], "--seeds")
    strategy, train_strategy = _strategy(args)
    t_start = time.perf_counter()
    ds = study.load_dataset(args)
    with kc.models.writable_dir(args["output_dir"], strategy) as out:
        with strategy.scope():  # the baseline is built (or loaded) in it; kc.compress runs outside, as it asks
            baseline = _baseline(args, ds, out, train_strategy)
        return _run(args, seeds, ds, baseline, out, train_strategy, t_start)


def _run(args, seeds, ds, baseline, out, strategy, t_start) -> dict:
    print("==> sensitivity of each channel group (validation split, no fine-tuning)", flush=True)
    sens = kc.pruning.sensitivity(baseline, ds, ratios=(0.25, 0.5, 0.75))
    sens.plot(os.path.join(out, "sensitivity.png"))

    print(f"==> kc.compress with {_budget(args)}, seed {seeds[0]}", flush=True)
    t0 = time.perf_counter()
    res = kc.compress(
        baseline, ds, **_budget(args), recovery_epochs=args["recovery_epochs"], step_epochs=args["step_epochs"],
        qat_epochs=args["qat_epochs"], step_fraction=args["step_fraction"], temperature=args["temperature"],
        alpha=args["alpha"], batch_size=args["compress_batch_size"], time_limit=args["time_limit"],
        seed=seeds[0], output_dir=args.get("search_dir") or os.path.join(args["output_dir"], "search"),
        strategy=strategy,  # every worker searches in the chief's folder, which only the chief writes
    )
    search_seconds = time.perf_counter() - t0
    kc.export.save(res.flatbuffer, os.path.join(out, "winner.tflite"))
    kc.export.write_atomic(os.path.join(out, "recipe.json"), json.dumps(res.recipe.get_config(), indent=1))

    runs = [{"seed": seeds[0], "size_bytes": res.winner["size_bytes"], "test_accuracy": res.winner["test_accuracy"],
             "val_accuracy": res.winner["val_accuracy"], "seconds": round(search_seconds, 1)}]
    for seed in seeds[1:]:
        runs.append(_replay(res.recipe, ds, baseline, seed, args, out, strategy))
    acc = np.array([r["test_accuracy"] for r in runs])
    size = np.array([r["size_bytes"] for r in runs])
    base = res.baseline
    summary = {
        "test_accuracy_mean": float(acc.mean()), "test_accuracy_std": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
        "size_bytes_mean": float(size.mean()), "size_bytes_max": int(size.max()),
        "size_ratio": base["float32_bytes"] / float(size.mean()), "seeds": seeds,
    }
    resolved = dict(args, machine=study.machine_info(), command=" ".join([os.path.basename(sys.argv[0]), *sys.argv[1:]]),
                    seconds=round(time.perf_counter() - t_start, 1), search_seconds=round(search_seconds, 1))
    kc.export.write_atomic(os.path.join(out, "flags.json"), json.dumps(resolved, indent=2) + "\n")
    payload = {"records": res.records, "winner": res.winner, "baseline": base, "runs": runs, "summary": summary,
               "recipe": res.recipe.get_config(), "sensitivity": sens.as_dict(), "flags": resolved}
    kc.export.write_atomic(os.path.join(out, "results.json"), json.dumps(payload, indent=1, default=str) + "\n")
    kc.export.write_atomic(os.path.join(out, "results.csv"), kc.reporting.to_csv(
        [{k: r.get(k) for k in ("phase", "variant", "move", "size_bytes", "gzip_bytes", "params", "macs",
                                "arena_bytes", "val_accuracy", "test_accuracy", "meets_budget")} for r in res.records]))
    kc.reporting.plot_pareto([{**r, "accuracy": r["val_accuracy"], "label": r["variant"]} for r in res.records],
                             os.path.join(out, "pareto.png"), label="label",
                             title=f"compress {args['model']} on {args['dataset']}: validation accuracy vs bytes")
    kc.export.write_atomic(os.path.join(out, "report.md"), _report(args, res, runs, summary, sens, resolved))
    if args.get("save_recipe") and (strategy is None or kc.models.is_chief(strategy)):
        kc.export.write_atomic(args["save_recipe"], json.dumps(_annotated_recipe(args, res, runs, summary, resolved),
                                                               indent=1) + "\n")
    return payload


def _annotated_recipe(args, res, runs, summary, resolved) -> dict:
    """The recipe with what it was found for, as experiments/recipes/*.json holds it."""
    w = res.winner
    spread = (f"; {100 * summary['test_accuracy_mean']:.2f} ± {100 * summary['test_accuracy_std']:.2f}% over seeds "
              f"{', '.join(str(s) for s in summary['seeds'])}" if len(runs) > 1 else "")
    return {"model": args["model"], "dataset": args["dataset"], "budget": res.budget.describe(),
            "command": "python " + resolved["command"].replace("compress.py", "experiments/compress.py", 1),
            "result": f"{w['size_bytes']:,}-byte int8 flatbuffer, {100 * w['test_accuracy']:.2f}% test "
                      f"(seed {runs[0]['seed']}){spread}",
            "recipe": res.recipe.get_config()}


def _report(args, res, runs, summary, sens, resolved) -> str:
    from kcompress.compression.report import records_markdown, widths_text

    w, b = res.winner, res.baseline
    m = resolved["machine"]
    seeds_table = "\n".join(
        ["| seed | bytes | test accuracy (%) | validation accuracy (%) | seconds |", "|---:|---:|---:|---:|---:|"]
        + [f"| {r['seed']} | {r['size_bytes']:,} | {100 * r['test_accuracy']:.2f} | {100 * r['val_accuracy']:.2f} | "
           f"{r['seconds']:.0f} |" for r in runs]
        + ([f"| mean ± std (n={len(runs)}) | {summary['size_bytes_mean']:,.0f} | {100 * summary['test_accuracy_mean']:.2f}"
            f" ± {100 * summary['test_accuracy_std']:.2f} | – | – |"] if len(runs) > 1 else []))
    std = f" ± {100 * summary['test_accuracy_std']:.2f}" if len(runs) > 1 else ""
    return "\n".join([
        f"# compress: {args['model']} on {args['dataset']} ({res.budget.describe()})", "",
        f"Original: {b['params']:,} parameters, float32 flatbuffer {b['float32_bytes']:,} bytes, "
        f"{100 * b['test_accuracy']:.2f}% test / {100 * b['val_accuracy']:.2f}% validation; plain int8 "
        f"{b['int8']['size_bytes']:,} bytes.", "",
        f"**Winner (seed {runs[0]['seed']}): {w['size_bytes']:,} bytes, {w['size_ratio']:.1f}x smaller than float32, "
        f"{100 * w['test_accuracy']:.2f}% test accuracy** (int8 flatbuffer in LiteRT over {len(res.records) and ''}"
        f"the whole test set; validation {100 * w['val_accuracy']:.2f}%). Export: {w['export']}. "
        f"Over seeds {', '.join(str(s) for s in summary['seeds'])} (the recipe re-run): "
        f"**{100 * summary['test_accuracy_mean']:.2f}{std}%** at {summary['size_bytes_mean']:,.0f} bytes on average "
        f"({summary['size_ratio']:.1f}x).", "",
        f"Layer widths: {widths_text(w['widths'], b['int8']['widths'])}.", "",
        seeds_table, "",
        "## Sensitivity of the original model", "", sens.to_markdown(), "![sensitivity](sensitivity.png)", "",
        "## Recipe", "", "```json", json.dumps(res.recipe.get_config(), indent=1), "```", "",
        "## Every candidate", "",
        f"One search, seed {runs[0]['seed']} (n=1). "
        "Validation accuracy of each int8 flatbuffer in LiteRT (explore: after the step's short recovery, "
        "post-training quantized; finish: after full recovery, each export). The test set is used only for the winner.",
        "", records_markdown(res.records), "![pareto](pareto.png)", "",
        f"Search {resolved['search_seconds'] / 60:.1f} min, whole run {resolved['seconds'] / 60:.1f} min on {m['cpu']} "
        f"({m['cores']} cores; {' '.join(m['isa'])}), TensorFlow {m['tensorflow']}.", "",
    ])


def main(argv):
    del argv
    args = study.flag_values(_FLAG_NAMES)
    payload = run(args)
    s, w = payload["summary"], payload["winner"]
    print(f"Winner: {w['size_bytes']:,} bytes ({w['size_ratio']:.1f}x), test accuracy {100 * w['test_accuracy']:.2f}%; "
          f"over seeds {s['seeds']}: {100 * s['test_accuracy_mean']:.2f} ± {100 * s['test_accuracy_std']:.2f}%.")
    print(f"Wrote {args['output_dir']}/report.md, results.json, results.csv, recipe.json, winner.tflite.")


if __name__ == "__main__":
    define_flags()
    app.run(main)
