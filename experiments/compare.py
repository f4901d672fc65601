"""The main job: compare pruning, quantization, distillation and their combinations on one model.

    python experiments/compare.py                      # mnist, lenet5, into runs/compare

For every seed of --seeds (default 0): trains the baseline once, then runs every
variant as a kcompress pipeline that starts from it (the baseline is also the
distillation teacher), on the shared runner (``kcompress.reporting.study``). Each
finished variant is stored in <output_dir>/seed<N>/variants/<name>.json with its
flatbuffers, so a re-run with the same output dir and flags skips it (an
interrupted run loses nothing; adding seeds re-uses those done). At the end each
seed's flatbuffers are timed against each other in one process, and
results.json, results.csv, report.md (mean ± std over the seeds), pareto.png and
flags.json are written.
"""

from __future__ import annotations

import json
import os

from absl import app, flags, logging

import kcompress as kc
from kcompress.pipeline import (
    Cluster,
    Distill,
    Evaluate,
    Export,
    LowRank,
    Pipeline,
    Prune,
    PruneChannels,
    QuantizeAware,
    Train,
)
from kcompress.reporting import study

FLAGS = flags.FLAGS
_FLAG_NAMES: list[str] = []
# Flags that do not change results, so they do not invalidate finished variants.
# (The seed is part of every fingerprint: each seed's runs are stored apart, in seed<N>/.)
_NEUTRAL = {"output_dir", "variants", "latency_rounds", "data_dir", "compress_recipe", "seeds"}  # the recipe: in its own row's pipeline
# The flags the baseline depends on: changing others re-runs variants, not the baseline.
_BASELINE = ("dataset", "model", "epochs", "batch_size", "learning_rate", "max_train", "max_test",
             "latency_runs", "robustness_samples")


_RECIPES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "recipes")


def _compress_recipe(args):
    """(pipeline, meta) of the --compress_recipe file, or None.

    ``auto`` (the default) takes ``experiments/recipes/<model>_<dataset>.json`` when it
    exists; ``''`` leaves the row out. The file is either a Pipeline config
    (experiments/compress.py's recipe.json) or ``{"model", "dataset", "budget", "command",
    "recipe"}`` (experiments/recipes/*.json).
    """
    path = args.get("compress_recipe")
    if not path:
        return None
    if path == "auto":
        path = os.path.join(_RECIPES, f"{args['model']}_{args['dataset']}.json")
        if not os.path.isfile(path):
            logging.info("No compress recipe for %s on %s in %s; compressed_budget is left out.", args["model"],
                         args["dataset"], _RECIPES)
            return None
    elif not os.path.isfile(path):
        raise ValueError(f"--compress_recipe names {path!r}, which is not a file (or pass 'auto' or '').")
    with open(path, encoding="utf-8") as f:
        meta = json.load(f)
    if "recipe" not in meta:
        meta = {"model": args["model"], "dataset": "?", "budget": "?", "command": path, "recipe": meta}
    meta["path"] = os.path.relpath(path)
    if meta.get("model") != args["model"]:
        logging.warning("The compress recipe %s is for %s, not %s; compressed_budget is left out.", path,
                        meta.get("model"), args["model"])
        return None
    if meta.get("dataset") not in ("?", args["dataset"]):
        logging.warning("The compress recipe %s was found on %s; it is replayed on %s as it is.", path,
                        meta.get("dataset"), args["dataset"])
    return Pipeline.from_config(meta["recipe"]), meta


def _own_flags():
    flags.DEFINE_enum("student", "lenet5_student", sorted(kc.models.MODELS), "Small student model.")
    flags.DEFINE_integer("epochs", 10, "Training epochs of the baseline and of students.", lower_bound=1)
    flags.DEFINE_integer("finetune_epochs", 5, "Fine-tuning epochs after pruning.", lower_bound=1)
    flags.DEFINE_integer("qat_epochs", 2, "Quantization-aware fine-tuning epochs.", lower_bound=1)
    flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate (training and pruning fine-tunes).")
    flags.DEFINE_float("qat_learning_rate", 1e-4, "Adam learning rate of QAT fine-tuning.")
    flags.DEFINE_float("sparsity", 0.8, "Target sparsity of unstructured pruning.")
    flags.DEFINE_float("channel_ratio", 0.5, "Fraction of filters/units removed by channel pruning.")
    flags.DEFINE_float("temperature", 4.0, "Distillation temperature.")
    flags.DEFINE_float("alpha", 0.1, "Distillation weight of the hard-label loss.")
    # The pruned model is a copy of its teacher: it recovers best on logits plus the teacher's own
    # features of one layer (chosen on the validation split by experiments/distill.py).
    flags.DEFINE_float("prune_distill_temperature", 1.0, "Temperature of the distillation after unstructured pruning.")
    flags.DEFINE_float("prune_distill_alpha", 0.5, "Hard-label weight of the distillation after unstructured pruning.")
    flags.DEFINE_string("prune_distill_hint", "fc2", "Layer whose teacher features the pruned model also matches ('' for none).")
    flags.DEFINE_float("prune_distill_hint_weight", 0.1, "Weight of that feature hint.")
    flags.DEFINE_integer("clusters", 16, "Shared weight values per layer in the prune + cluster variant.")
    flags.DEFINE_integer("latency_rounds", 20, "Interleaved rounds of the final same-process latency comparison.")
    flags.DEFINE_list("variants", None, "Run only these variants. Default: the core rows (one per technique, the "
                      "combinations that pay and compressed_budget; about 17 min a seed on 2 CPUs); 'all': every row.")
    flags.DEFINE_string("compress_recipe", "auto", "A recipe found by experiments/compress.py, replayed as the "
                        "'compressed_budget' variant when it was found for --model; 'auto' takes "
                        "experiments/recipes/<model>_<dataset>.json if it exists, '' leaves the row out.")


def define_flags():
    """Defines this script's flags (a function so tests can import and reuse them)."""
    _FLAG_NAMES[:] = study.define_flags(
        _own_flags, output_dir="runs/compare", latency_runs=200, robustness_samples=2000,
        help_texts={"model": "Baseline (and teacher) model.",
                    "latency_runs": "Timed single-sample inferences per flatbuffer in evaluate."})
    flags.adopt_module_key_flags(study)  # --help lists the shared flags too


def baseline_pipeline(args: dict) -> Pipeline:
    """The baseline: trained once per seed, saved, and the teacher and starting point of every pipeline."""
    base_pipeline = Pipeline([Train(args["epochs"], args["batch_size"], args["learning_rate"]),
                              Export("float32"), Export("dynamic"), Export("float16"), Export("int8"),
                              Evaluate(keras=True, latency_runs=args["latency_runs"], robustness=True,
                                       robustness_samples=args["robustness_samples"])], name="baseline")
    return base_pipeline


def variants(args: dict) -> dict[str, tuple[str, Pipeline]]:
    """name -> (starting model: "baseline", "student" or an earlier variant's name, pipeline)."""
    e, b, lr = args["finetune_epochs"], args["batch_size"], args["learning_rate"]
    t, a = args["temperature"], args["alpha"]
    qat = dict(epochs=args["qat_epochs"], batch_size=b, learning_rate=args["qat_learning_rate"])
    prune = dict(epochs=e, batch_size=b, learning_rate=lr)
    sp, cr = args["sparsity"], args["channel_ratio"]
    ev = Evaluate(latency_runs=args["latency_runs"], robustness=True, robustness_samples=args["robustness_samples"])
    distill = Distill(t, a, batch_size=b)  # the fine-tuning of the *_distill_* rows
    prune_distill = Distill(args["prune_distill_temperature"], args["prune_distill_alpha"], batch_size=b,
                            hint=args["prune_distill_hint"] or None, hint_weight=args["prune_distill_hint_weight"])
    pct = f"{round(100 * sp)}"
    spec = {
        f"prune_{pct}": ("baseline", [Prune(sp, **prune), Export("float32", sparse=True), ev]),
        f"prune_50_{pct}": ("baseline", [Prune(sp, initial_sparsity=0.5, schedule_epochs=max(1, e * 3 // 8), **prune),
                                          Export("float32", sparse=True), ev]),
        f"channels_{round(100 * cr)}": ("baseline", [PruneChannels(cr, **prune), Export("float32"), ev]),
        "qat_int8": ("baseline", [QuantizeAware(**qat), Export("int8"), ev]),
        "lowrank_fc_50": ("baseline", [LowRank(param_ratio=0.5, layers=["fc1", "fc2"], **prune), Export("float32"),
                                       Export("int8"), ev]),
        f"prune90_cluster{args['clusters']}": ("baseline", [
            Prune(0.9, **prune), Cluster(args["clusters"], epochs=3, batch_size=b, learning_rate=args["qat_learning_rate"]),
            Export("float32", sparse=True), Export("int8"), ev]),
        "student_scratch": ("student", [Train(args["epochs"], b, lr, teacher=False), Export("float32"), ev]),
        "student_distilled": ("student", [Distill(t, a, epochs=args["epochs"], learning_rate=lr, batch_size=b),
                                          Export("float32"), Export("int8"), ev]),
        # The combinations continue from the rows above (an entry named as the start: its final model), so
        # "prune, then QAT" quantizes the very model the prune row measured instead of pruning again.
        f"prune{pct}_qat_int8": (f"prune_{pct}", [QuantizeAware(**qat), Export("int8"), Export("int8", sparse=True), ev]),
        f"prune{pct}_distill_qat_int8": ("baseline", [Prune(sp, **prune, finetune=prune_distill),
                                                      QuantizeAware(**qat), Export("int8"), ev]),
        f"channels{round(100 * cr)}_qat_int8": (f"channels_{round(100 * cr)}", [QuantizeAware(**qat), Export("int8"), ev]),
        f"channels{round(100 * cr)}_distill_int8": ("baseline", [PruneChannels(cr, **prune, finetune=distill),
                                                                 Export("int8"), ev]),
        f"channels{round(100 * cr)}_distill_qat_int8": (f"channels{round(100 * cr)}_distill_int8", [
            QuantizeAware(**qat, finetune=distill), Export("int8"), ev]),
    }
    found = _compress_recipe(args)
    if found is not None:
        recipe, _ = found
        # The recipe's own stages (its seeds too, see run()), measured like every other row.
        spec["compressed_budget"] = ("baseline", [*recipe.stages[:-1], ev])
    return {name: (start, Pipeline(stages, name=name)) for name, (start, stages) in spec.items()}


def core_variants(args: dict, all_variants: dict) -> list[str]:
    """The rows the main job runs by default: each technique once, the combinations that pay, the budget row.

    Left to ``--variants=all``: the second pruning schedule, low-rank, prune + cluster, the students
    and the distilled combinations (about as long again).
    """
    pct, cr = round(100 * args["sparsity"]), round(100 * args["channel_ratio"])
    core = [f"prune_{pct}", f"channels_{cr}", "qat_int8", f"prune{pct}_qat_int8", f"channels{cr}_qat_int8",
            "compressed_budget"]
    return [name for name in core if name in all_variants]


def _with_starts(chosen: list[str], all_variants: dict) -> list[str]:
    """``chosen`` plus the variants they continue from, in the order of ``all_variants``."""
    need, todo = set(), list(chosen)
    while todo:
        name = todo.pop()
        if name not in need:
            need.add(name)
            start = all_variants[name][0]
            if start in all_variants:
                todo.append(start)
    added = sorted(need - set(chosen))
    if added:
        logging.info("Also running %s: the variants %s continue from them.", added, chosen)
    return [name for name in all_variants if name in need]


def run(args: dict) -> list[dict]:
    """Runs (or resumes) every variant over --seeds, then writes the report; returns every seed's records."""
    seeds = study.parse_seeds(args["seeds"])
    strategy = kc.models.get_strategy(args.get("strategy") or "default")
    with kc.models.writable_dir(args["output_dir"], strategy) as out:
        ds = study.load_dataset(args)
        all_variants = variants(args)
        chosen = args["variants"] or core_variants(args, all_variants)
        if chosen == ["all"]:
            chosen = list(all_variants)
        unknown = [v for v in chosen if v not in all_variants]
        if unknown:
            raise ValueError(f"--variants names {unknown}, not among {list(all_variants)} (or 'all').")
        chosen = _with_starts(chosen, all_variants)
        # The compress recipe repeats its search's training only with the stage seeds it was found with.
        entries = [study.Entry(name, *all_variants[name], stage_seeds=name == "compressed_budget") for name in chosen]

        def build(start, seed):
            return kc.models.get(args["model"] if start == "model" else args[start], ds.input_shape, ds.num_classes,
                                 seed=seed)

        runner = study.Study(entries, build, settings={k: v for k, v in args.items() if k not in _NEUTRAL},
                             baseline=study.Entry("baseline", "model", baseline_pipeline(args)),
                             baseline_settings=_BASELINE,
                             strategy=None if args.get("strategy", "default") == "default" else strategy)
        # Every worker resumes from the chief's output_dir (shared storage), so all skip the same variants.
        done = runner.run(ds, out, seeds, resume_dir=args["output_dir"])
        if not kc.models.is_chief(strategy):  # the others trained alongside; the chief measures and reports
            return [r for seed in seeds for name in ["baseline", *chosen] for r in done[seed][name]["records"]]
        return _finish(out, ds, done, ["baseline", *chosen], args, seeds)


def _measure_seed(folder, ds, done, plan, args) -> list[dict]:
    """One seed's records: same-process latency comparison, TFLM arenas, ratios against its baseline."""
    records = [dict(r) for name in plan for r in done[name]["records"]]
    ref = next(r for r in records if r["variant"] == "baseline" and r["flatbuffer"] == "float32")
    base_acc = next(r for r in records if r["variant"] == "baseline" and r["flatbuffer"] == "keras")["accuracy"]
    flatbuffers = {}
    for r in records:
        if r["flatbuffer"] != "keras":
            with open(os.path.join(folder, f"{r['variant']}_{r['flatbuffer']}.tflite"), "rb") as f:
                flatbuffers[(r["variant"], r["flatbuffer"])] = f.read()
    keys = list(flatbuffers)
    timing = kc.evaluation.compare_latency({f"{v}/{f}": flatbuffers[(v, f)] for v, f in keys}, ds.x_test[:1],
                                           reference="baseline/float32", rounds=args["latency_rounds"])
    for r in records:
        key = f"{r['variant']}/{r['flatbuffer']}"
        if r["flatbuffer"] in ("int8", "int8_sparse"):
            # The TFLite Micro arena, measured in its interpreter, next to kcompress's estimate.
            flat = flatbuffers[(r["variant"], r["flatbuffer"])]
            r["arena_estimate_bytes"] = kc.export.estimate_arena(flat).arena_bytes
            try:
                r["tflm_arena_bytes"] = kc.export.measure_arena(flat)
            except (ImportError, ValueError) as err:  # not installed, or an op TFLM has no kernel for
                logging.warning("No TFLite Micro arena for %s: %s", key, err)
                r["tflm_arena_bytes"] = None
        if key in timing:
            r["latency_ms"] = timing[key]["latency_ms"]
            r["latency_ratio"] = timing[key]["latency_ratio"]
        r["compression"] = ref["size_bytes"] / r["size_bytes"]
        r["gzip_compression"] = ref["size_bytes"] / r["gzip_bytes"]
        r["accuracy_delta"] = 100.0 * (r["accuracy"] - base_acc)
        if r.get("entropy_bytes"):
            r["entropy_ratio"] = 4 * r["params"] / r["entropy_bytes"]
        r["label"] = key
    return records


def _finish(out, ds, done, plan, args, seeds) -> list[dict]:
    """Measures every seed, then writes the tables of mean ± std over the seeds and the plot."""
    records = [r for seed in seeds for r in _measure_seed(study.seed_dir(out, seed), ds, done[seed], plan, args)]
    summary = study.summarize(records, by=("variant", "flatbuffer"))
    base_acc = next(r for r in summary if r["variant"] == "baseline" and r["flatbuffer"] == "keras")["accuracy"]
    int8 = [r for r in summary if r["flatbuffer"].startswith("int8")]
    best = max((r for r in int8 if r["accuracy"] >= base_acc - 0.002), key=lambda r: r["compression"], default=None)
    columns = ("variant", "flatbuffer", "accuracy", "accuracy_delta", "nonzero_params", "size_bytes", "gzip_bytes",
               "compression", "gzip_compression", "entropy_bytes", "entropy_ratio", "macs", "latency_ms", "latency_ratio",
               "tflm_arena_bytes", "arena_estimate_bytes")
    robust_cols = ("variant", "flatbuffer", "accuracy", *sorted(k for k in records[0] if k.startswith("robust_")))
    found = _compress_recipe(args)
    stage_lines = []
    for name in plan:
        entries = [done[seed][name] for seed in seeds]
        steps = " → ".join(f"{s['stage']} ({s['seconds']:.0f} s)" for s in entries[0]["log"])
        took = ", ".join(f"{e['seconds']:.0f} s" for e in entries)
        stage_lines.append(f"- **{name}** ({took}): {steps}")
    machine = study.machine_info()
    notes = "\n".join([
        f"Baseline: {args['model']} trained {args['epochs']} epochs (Adam {args['learning_rate']}, batch "
        f"{args['batch_size']}, best validation epoch). Every other row starts from it (students from scratch) and "
        f"uses it as the distillation teacher (T={args['temperature']}, alpha={args['alpha']}; after unstructured "
        f"pruning T={args['prune_distill_temperature']}, alpha={args['prune_distill_alpha']}"
        + (f", plus the teacher's {args['prune_distill_hint']} features x{args['prune_distill_hint_weight']:g}"
           if args["prune_distill_hint"] else "") + "). Accuracy: the "
        "flatbuffer in the LiteRT interpreter over the test set (`keras` rows: the Keras model). Size ratio: "
        "baseline float32 flatbuffer bytes / these bytes (gzip ratio: / zlib-9 bytes). Latency: median "
        "single-sample, single-thread LiteRT invocation, all flatbuffers timed interleaved in one process "
        f"({args['latency_rounds']} rounds); ratio against the baseline float32 flatbuffer. TFLM arena: the "
        "smallest tensor arena the TFLite Micro interpreter runs the int8 flatbuffer in (measured; "
        "`kc.export.measure_arena`), next to kcompress's estimate (`kc.export.estimate_arena`).",
        "",
        (f"Best int8 flatbuffer within 0.2 points of the baseline: **{best['label']}**, {100 * best['accuracy']:.2f}% "
         f"at {best['size_bytes']:,.0f} bytes, {best['compression']:.1f}x smaller than float32."
         if best else "No int8 flatbuffer is within 0.2 points of the baseline."),
        "",
        *([f"compressed_budget: the recipe `kc.compress` found for {found[1]['budget']} on {found[1]['dataset']} "
           f"(`{found[1]['command']}`), replayed from `{found[1]['path']}` "
           "with its stage seeds.", ""] if "compressed_budget" in plan and found is not None else []),
        "![accuracy vs size](pareto.png)",
        "",
        f"Robustness: accuracy on the first {args['robustness_samples']} test images with Gaussian noise of "
        "standard deviation s (robust_gauss_s) or a fraction s of pixels set to 0 or 1 (robust_saltpepper_s), "
        "inputs clipped to [0, 1], seeded. Entropy bytes: Deep Compression accounting of the Keras weights "
        "(Huffman-coded shared values and sparse index gaps plus codebooks; `kcompress.evaluation."
        "entropy_coded_size`), entropy ratio = 4 x params / entropy bytes; none for quantization-aware models.",
        "",
        kc.reporting.to_markdown(summary, robust_cols),
        "Stages (seconds per seed):",
        *stage_lines,
        "",
        f"Machine: {machine['cpu']} ({machine['cores']} cores; {' '.join(machine['isa'])}), "
        f"TensorFlow {machine['tensorflow']}. Artefacts of seed N: seedN/.",
    ])
    study.write_outputs(out, records, args, title=f"Compression comparison: {args['model']} on {args['dataset']}",
                        notes=notes, columns=columns, by=("variant", "flatbuffer"), summary=summary,
                        pareto=dict(label="label", title=f"{args['model']} on {args['dataset']}: accuracy vs "
                                    "flatbuffer size"))
    return records


def main(argv):
    del argv
    args = study.flag_values(_FLAG_NAMES)
    records = run(args)
    summary = study.summarize(records, by=("variant", "flatbuffer"))
    print(kc.reporting.to_markdown(summary, ("variant", "flatbuffer", "accuracy", "accuracy_delta", "size_bytes",
                                             "gzip_bytes", "compression", "latency_ms", "latency_ratio")))
    print(f"Wrote {args['output_dir']}/results.json, results.csv, report.md, pareto.png and, per seed, "
          "seed<N>/ with the flatbuffers.")


if __name__ == "__main__":
    define_flags()
    app.run(main)
