"""The distillation temperature study, and prune + distill vs prune + fine-tune.

    python experiments/distill.py --output_dir=runs/distill

1. Trains the teacher (LeNet-5, the baseline protocol) or loads --teacher_model.
2. Chooses alpha on the validation split: one distilled student per --alphas at
   --alpha_temperature (first seed); the alpha with the best validation accuracy wins.
3. For every seed: the student trained from scratch (the control) and distilled
   students at every --temperatures, all with the same epochs, optimizer, batch size,
   initial weights and data order (the seed fixes both). The best temperature is the
   one with the best mean validation accuracy over the seeds; test accuracy is
   reported for all of them.
4. Prunes the teacher to --prune_sparsity (polynomial ramp over the first half of
   --prune_epochs) and recovers it for --prune_epochs, once with plain fine-tuning and
   once distilling from the unpruned teacher, per --prune_seeds. The distillation
   matches the teacher's logits and, with --prune_hint (default fc2:fc2), the
   teacher's own features of that layer (a FitNets hint without a regressor: the
   pruned student has the teacher's shapes). alpha, T and the hint weight are chosen
   on the validation split from --prune_alphas x --prune_temperatures x
   --prune_hint_weights (first prune seed); the chosen alpha and T without the hint
   (logits only) are run too, so the table shows what the hint adds.

Every variant is a ``kcompress.pipeline.Pipeline`` (``Train``, ``Distill``, or ``Prune`` whose
fine-tuning is ``finetune=Distill(...)`` or plain) ending in ``Evaluate(keras=True)``, run on
the shared study runner (``kcompress.reporting.study.Study``): the teacher trains in
<output_dir>/teacher/, and each finished run is stored in <output_dir>/seed<N>/variants/<name>.json,
so a re-run with the same flags re-uses it (an interrupted run loses nothing). Every model is
measured with ``kc.evaluation.evaluate`` on the Keras model (accuracy over the test set,
parameters, float32 flatbuffer bytes and gzip bytes, single-sample Keras latency). Writes
results.json, results.csv, report.md and flags.json into --output_dir.
"""

from __future__ import annotations

import inspect
import math
import os
import statistics
import time

from absl import app, flags, logging

import kcompress as kc
from kcompress.pipeline import Distill, Evaluate, Pipeline, Prune, Train
from kcompress.reporting import study

FLAGS = flags.FLAGS
_FLAG_NAMES: list[str] = []
# What the stored runs depend on besides their pipelines (changing these re-runs them).
_SETTINGS = ("dataset", "max_train", "max_test", "teacher", "teacher_model", "teacher_epochs", "student",
             "learning_rate", "batch_size", "validation_split", "strategy")
_TEACHER_SETTINGS = ("dataset", "max_train", "max_test", "teacher", "validation_split", "strategy")
_COLUMNS = ("variant", "accuracy", "params", "nonzero_params", "size_bytes", "gzip_bytes", "latency_ms")


def _own_flags():
    flags.DEFINE_enum("teacher", "lenet5", sorted(kc.models.MODELS), "Zoo model of the teacher.")
    flags.DEFINE_string("teacher_model", None, "A trained teacher .keras file to load instead of training one.")
    flags.DEFINE_integer("teacher_epochs", 10, "Teacher training epochs (baseline protocol).", lower_bound=1)
    flags.DEFINE_enum("student", "mlp_tiny", sorted(kc.models.MODELS), "Zoo model of the student.")
    flags.DEFINE_integer("epochs", 40, "Training epochs of every student (scratch and distilled alike).", lower_bound=1)
    flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate of teacher and students.", lower_bound=0.0)
    flags.DEFINE_list("temperatures", ["1", "2", "4", "6", "8", "10"], "Distillation temperatures to sweep.")
    flags.DEFINE_list("alphas", ["0.1", "0.5"], "Candidate hard-label weights; chosen on the validation split.")
    flags.DEFINE_float("alpha_temperature", 4.0, "Temperature at which alpha is chosen.", lower_bound=0.0)
    flags.DEFINE_float("validation_split", 0.1, "Fraction of the training split held out for model "
                       "selection: 0.1, the tail every pipeline stage holds out.")
    flags.DEFINE_float("prune_sparsity", 0.8, "Target sparsity of prune + fine-tune / prune + distill (0 skips).")
    flags.DEFINE_integer("prune_epochs", 4, "Recovery epochs of both pruned variants.", lower_bound=1)
    flags.DEFINE_list("prune_seeds", ["0", "1", "2", "3", "4"], "Seeds of the pruning comparison.")
    flags.DEFINE_list("prune_alphas", ["0.5", "0.9"], "Candidate alphas of prune + distill (chosen on validation).")
    flags.DEFINE_list("prune_temperatures", ["1", "2"], "Candidate temperatures of prune + distill.")
    flags.DEFINE_string("prune_hint", "fc2:fc2", "student_layer:teacher_layer hint of prune + distill ('' for logits only).")
    flags.DEFINE_list("prune_hint_weights", ["0.03", "0.1"], "Candidate hint weights of prune + distill (with --prune_hint).")
    flags.DEFINE_string("hint", None, "student_layer:teacher_layer: also distill with a FitNets hint at the best T.")
    flags.DEFINE_float("hint_weight", 0.1, "Weight of the hint loss (with --hint).", lower_bound=0.0)


def define_flags():
    """Defines this script's flags (a function so tests can import and reuse them)."""
    _FLAG_NAMES[:] = study.define_flags(
        _own_flags, output_dir="runs/distill", omit=("model",), seeds=["0", "1", "2"], latency_runs=200,
        help_texts={"seeds": "Seeds of the students (weights and data order); the tables show mean ± std over them.",
                    "latency_runs": "Timed single-sample inferences per model."})
    flags.adopt_module_key_flags(study)  # --help lists the shared flags too


def _floats(values, name, positive=False):
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a list of numbers, got {values!r}.") from err
    if not out or any(not math.isfinite(v) or (positive and v <= 0) for v in out):
        raise ValueError(f"{name} must be a non-empty list of finite{' positive' if positive else ''} numbers, got {values!r}.")
    return out


def _hint_layers(value, name):
    """``'student_layer:teacher_layer'`` -> a pair of names; ``None`` / ``''`` -> ``None``."""
    if not value:
        return None
    parts = value.split(":") if isinstance(value, str) else []
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"{name} must be 'student_layer:teacher_layer', got {value!r}.")
    return tuple(parts)


def _ints(values, name):
    try:
        out = [int(v) for v in values]
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a list of ints, got {values!r}.") from err
    if any(v < 0 for v in out):
        raise ValueError(f"{name} must be non-negative ints, got {values!r}.")
    return out


def _name(*parts) -> str:
    """A pipeline (and stored variant) name: no spaces, slashes or colons."""
    return "_".join(str(p) for p in parts).replace(":", "-").replace(" ", "")


class _Runner:
    """Builds the variants as Pipelines and runs them on the shared study runner; holds what they share.

    Every variant is a :class:`kcompress.pipeline.Pipeline` run by :class:`kcompress.reporting.study.Study`
    (``seed<N>/variants/<name>.json`` in ``output_dir``), so a re-run with the same flags re-uses what
    finished, and a variant run twice (the chosen alpha's run at ``alpha_temperature``, the chosen prune
    + distill settings' run on the first prune seed) is trained once.
    """

    def __init__(self, ds, args, output_dir, resume_dir=None):
        self.ds, self.args, self.output_dir, self.resume_dir = ds, args, output_dir, resume_dir
        strategy = kc.models.get_strategy(args["strategy"])
        self.strategy = strategy
        self.study_strategy = None if args["strategy"] == "default" else strategy
        self.settings = {k: args[k] for k in _SETTINGS}
        self.teacher_net = None
        self.done = {}  # (seed, pipeline name) -> the Study's stored record

    def _build(self, start, seed):
        a = self.args
        if start == "trained_teacher":
            return self.teacher_net
        # "teacher" (trained once, seed 0) or "student" (one per seed): the seed fixes the initial weights.
        return kc.models.get(a[start], self.ds.input_shape, self.ds.num_classes, seed=seed)

    def _evaluate(self):
        return Evaluate(keras=True, latency_runs=self.args["latency_runs"])

    def teacher(self):
        """The teacher: --teacher_model loaded, or a Train pipeline (seed 0) in ``output_dir/teacher``."""
        a = self.args
        if a["teacher_model"]:
            logging.info("Loading the teacher from %s", a["teacher_model"])
            with self.strategy.scope():
                self.teacher_net = kc.keras.models.load_model(a["teacher_model"], compile=False)
            return {}
        logging.info("Training the teacher %s for %d epochs", a["teacher"], a["teacher_epochs"])
        train = Pipeline([Train(a["teacher_epochs"], a["batch_size"], a["learning_rate"])], name="teacher")
        folder = os.path.join(self.output_dir, "teacher")
        shared = os.path.join(self.resume_dir, "teacher") if self.resume_dir else None
        done = study.Study([], self._build, settings={k: self.settings[k] for k in _TEACHER_SETTINGS},
                           baseline=study.Entry("teacher", "teacher", train),
                           strategy=self.study_strategy).run(self.ds, folder, seeds=[0], resume_dir=shared)
        path = next(p for p in (os.path.join(study.seed_dir(f, 0), "baseline.keras") for f in (folder, shared) if f)
                    if os.path.isfile(p))
        with self.strategy.scope():
            self.teacher_net = kc.keras.models.load_model(path, compile=False)
        return _training_info(done[0]["teacher"])

    def run(self, pipelines, seeds, start="student"):
        """Runs ``pipelines`` (from ``start``) for every seed, the teacher as the study's baseline."""
        entries = [study.Entry(p.name, start, p) for p in pipelines]
        baseline = study.Entry("teacher", "trained_teacher", Pipeline([self._evaluate()], name="teacher"))
        done = study.Study(entries, self._build, settings=self.settings, baseline=baseline,
                           baseline_settings=[k for k in _SETTINGS if k != "student"],
                           strategy=self.study_strategy).run(self.ds, self.output_dir, seeds,
                                                              resume_dir=self.resume_dir)
        for seed, by_name in done.items():
            for name, record in by_name.items():
                self.done[seed, name] = record

    def record(self, run_seed, name, variant, /, **extra):
        """The measured record of pipeline ``name``'s run with ``run_seed``, as ``variant``."""
        stored = self.done[run_seed, name]
        (measured,) = stored["records"]
        record = {**measured, "variant": variant, "pipeline": name, **extra, **_training_info(stored)}
        logging.info("%-28s test %.2f%%  val %.2f%%  %s params  %.0f s", variant, 100 * record["accuracy"],
                     100 * record.get("val_accuracy", float("nan")), f"{record['params']:,}",
                     record.get("train_seconds", 0.0))
        return record

    # ------------------------------------------------------------ the variants

    def scratch(self):
        a = self.args
        return Pipeline([Train(a["epochs"], a["batch_size"], a["learning_rate"], teacher=False), self._evaluate()],
                        name="scratch")

    def distilled(self, alpha, temperature, hint=None):
        """A student distilled for --epochs (best validation epoch kept), with a FitNets hint if given."""
        a = self.args
        distill = Distill(temperature, alpha, epochs=a["epochs"], learning_rate=a["learning_rate"],
                          batch_size=a["batch_size"], hint=hint, hint_weight=a["hint_weight"] if hint else 0.1,
                          restore_best=True)
        name = _name("distill", f"alpha{alpha:g}", f"T{temperature:g}", *([f"hint{hint}"] if hint else []))
        return Pipeline([distill, self._evaluate()], name=name)

    def pruned(self, alpha=None, temperature=None, hint=None, hint_weight=0.0):
        """The teacher pruned to prune_sparsity (polynomial ramp over the first half of --prune_epochs) and
        recovered by fine-tuning (alpha None) or distillation (with the hint when ``hint_weight > 0``).

        The last epoch's weights are kept: an earlier "best" epoch would be less sparse.
        """
        a = self.args
        finetune = None
        if alpha is not None:
            finetune = Distill(temperature, alpha, batch_size=a["batch_size"],
                               hint=hint if hint_weight else None, hint_weight=hint_weight)
        prune = Prune(a["prune_sparsity"], initial_sparsity=0.0, schedule_epochs=max(1, a["prune_epochs"] // 2),
                      epochs=a["prune_epochs"], batch_size=a["batch_size"], learning_rate=a["learning_rate"],
                      finetune=finetune)
        tag = f"prune{100 * a['prune_sparsity']:g}"
        name = (_name(tag, "finetune") if alpha is None
                else _name(tag, "distill", f"alpha{alpha:g}", f"T{temperature:g}", f"hint{hint_weight:g}"))
        return Pipeline([prune, self._evaluate()], name=name)


def _training_info(stored) -> dict:
    """``val_accuracy`` (of the weights kept), ``best_epoch`` (1-based), ``train_seconds`` and, after pruning,
    ``sparsity`` of a stored pipeline run (from its training stage's log)."""
    trained = [i for i, s in enumerate(stored["log"]) if "val_accuracy" in s]
    if not trained:  # the teacher's evaluation
        return {}
    (i,) = trained
    train = stored["log"][i]
    # Without restore_best the last epoch's weights are kept.
    info = {"val_accuracy": train["val_accuracy"],
            "best_epoch": train.get("best_epoch", stored["pipeline"]["stages"][i]["epochs"]),
            "train_seconds": train["seconds"]}
    if "sparsity" in train:
        info["sparsity"] = train["sparsity"]
    return info


def _mean_record(variant, records, **extra):
    accs = [r["accuracy"] for r in records]
    first = records[0]
    return {
        "variant": variant, "accuracy": statistics.fmean(accs),
        "accuracy_std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
        "val_accuracy": statistics.fmean(r["val_accuracy"] for r in records),
        "seeds": [r["seed"] for r in records], "seed_accuracies": accs,
        **{k: first[k] for k in ("params", "nonzero_params", "size_bytes", "gzip_bytes", "macs") if k in first},
        "latency_ms": statistics.median(r["latency_ms"] for r in records),
        "num_seeds": len(records), **extra,
    }


def _pct(value):
    return f"{100 * value:.2f}"


def _pm(row):
    """``mean ± std`` (%) of a seed-mean row; the value alone for one seed."""
    return _pct(row["accuracy"]) + (f" ± {100 * row['accuracy_std']:.2f}" if row["num_seeds"] > 1 else "")


def _summary_table(rows, seeds):
    lines = ["| variant | T | alpha | " + " | ".join(f"seed {s} (%)" for s in seeds)
             + " | mean (%) | std (pts) | val mean (%) | params | bytes | gzip bytes | latency (ms) |",
             "|---|---:|---:|" + "---:|" * len(seeds) + "---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r.get('temperature', '–')} | {r.get('alpha', '–')} | "
            + " | ".join(_pct(a) for a in r["seed_accuracies"])
            + f" | {_pct(r['accuracy'])} | {100 * r['accuracy_std']:.2f} | {_pct(r['val_accuracy'])} | "
            f"{r['params']:,} | {r['size_bytes']:,} | {r['gzip_bytes']:,} | {r['latency_ms']:.4f} |")
    return "\n".join(lines) + "\n"


def _prune_table(rows, seeds):
    lines = ["| variant | " + " | ".join(f"seed {s} (%)" for s in seeds)
             + " | mean ± std (%) | sparsity (%) | nonzero | gzip bytes |",
             "|---|" + "---:|" * (len(seeds) + 4)]
    for r in rows:
        hint = f", hint {r['hint']} x{r['hint_weight']:g}" if r.get("hint_weight") else ""
        how = "" if r.get("alpha") is None else f" (T={r['temperature']:g}, alpha={r['alpha']:g}{hint})"
        lines.append(f"| {r['variant']}{how} | " + " | ".join(_pct(a) for a in r["seed_accuracies"])
                     + f" | {_pm(r)} | {_pct(r['sparsity'])} | {r['nonzero_params']:,} | {r['gzip_bytes']:,} |")
    return "\n".join(lines) + "\n"


def run(output_dir: str, *args, **kwargs) -> list[dict]:
    """Runs the study and writes its outputs; returns the records (arguments as :func:`_run`).

    Under ``strategy="multiworker"`` every worker runs the study; only the chief writes ``output_dir``,
    and every worker resumes from it (shared storage), so all skip the same finished runs.
    """
    bound = inspect.signature(_run).bind(output_dir, *args, **kwargs)
    bound.apply_defaults()
    with kc.models.writable_dir(output_dir, kc.models.get_strategy(bound.arguments["strategy"])) as out:
        bound.arguments["output_dir"], bound.arguments["resume_dir"] = out, output_dir
        return _run(*bound.args, **bound.kwargs)


def _run(output_dir: str, dataset="mnist", teacher="lenet5", teacher_model=None, teacher_epochs=10,
        student="mlp_tiny", epochs=40, batch_size=256, learning_rate=1e-3, temperatures=(1, 2, 4, 6, 8, 10),
        alphas=(0.1, 0.5), alpha_temperature=4.0, seeds=(0, 1, 2), validation_split=0.1, prune_sparsity=0.8,
        prune_epochs=4, prune_seeds=(0, 1, 2, 3, 4), prune_alphas=(0.5, 0.9), prune_temperatures=(1, 2),
        prune_hint="fc2:fc2", prune_hint_weights=(0.03, 0.1), hint=None, hint_weight=0.1, data_dir=None,
        max_train=None, max_test=None, latency_runs=200, strategy="default", flag_values=None, resume_dir=None) -> list[dict]:
    """Runs the study and writes its outputs into ``output_dir``; returns the records.

    ``resume_dir``: where finished runs are also looked for (a multi-worker worker writing into a
    temporary folder resumes from the chief's ``output_dir``).
    """
    temperatures = _floats(temperatures, "temperatures", positive=True)
    alphas = _floats(alphas, "alphas")
    seeds, prune_seeds = _ints(seeds, "seeds"), _ints(prune_seeds, "prune_seeds")
    prune_alphas = _floats(prune_alphas, "prune_alphas")
    prune_temperatures = _floats(prune_temperatures, "prune_temperatures", positive=True)
    prune_hint_layers = _hint_layers(prune_hint, "prune_hint")
    prune_hint_weights = _floats(prune_hint_weights, "prune_hint_weights") if prune_hint_layers else [0.0]
    if any(w < 0 for w in prune_hint_weights):
        raise ValueError(f"prune_hint_weights must be >= 0, got {prune_hint_weights!r}.")
    if any(not 0 <= x <= 1 for x in alphas + prune_alphas):
        raise ValueError(f"alphas and prune_alphas must lie in [0, 1], got {alphas!r} and {prune_alphas!r}.")
    if not seeds:
        raise ValueError("seeds must name at least one seed.")
    if validation_split != 0.1:
        raise ValueError(f"validation_split must be 0.1 (> 0: alpha and T are chosen on it; the pipeline stages "
                         f"hold out the last 10% of the training split), got {validation_split!r}.")
    if not 0 <= prune_sparsity < 1:
        raise ValueError(f"prune_sparsity must be in [0, 1), got {prune_sparsity!r}.")
    hint_layers = _hint_layers(hint, "hint")
    args = dict(flag_values or {}, dataset=dataset, teacher=teacher, teacher_model=teacher_model,
                teacher_epochs=teacher_epochs, student=student, epochs=epochs, batch_size=batch_size,
                learning_rate=learning_rate, temperatures=temperatures, alphas=alphas,
                alpha_temperature=float(alpha_temperature), seeds=seeds, validation_split=validation_split,
                prune_sparsity=prune_sparsity, prune_epochs=prune_epochs, prune_seeds=prune_seeds,
                prune_alphas=prune_alphas, prune_temperatures=prune_temperatures, prune_hint=prune_hint or None,
                prune_hint_weights=prune_hint_weights, hint=hint, hint_weight=hint_weight,
                latency_runs=latency_runs, strategy=strategy)
    t_start = time.perf_counter()
    ds = study.load_dataset(dict(dataset=dataset, data_dir=data_dir, max_train=max_train, max_test=max_test))
    os.makedirs(output_dir, exist_ok=True)
    runner = _Runner(ds, dict(args, max_train=max_train, max_test=max_test), output_dir, resume_dir)
    records = []

    info = runner.teacher()
    # The teacher is every study's baseline: measured once per seed (the first seed's is reported).
    runner.run([], seeds[:1])
    records.append(runner.record(seeds[0], "teacher", "teacher", role="teacher", source=teacher_model or teacher,
                                 **info))

    # Alpha on the validation split, first seed, one temperature.
    alpha_runs = {alpha: runner.distilled(alpha, args["alpha_temperature"]) for alpha in alphas}
    runner.run(alpha_runs.values(), seeds[:1])
    candidates = {alpha: runner.record(seeds[0], p.name, f"alpha={alpha:g} T={args['alpha_temperature']:g} seed {seeds[0]}",
                                       role="alpha_selection", seed=seeds[0], alpha=alpha,
                                       temperature=args["alpha_temperature"])
                  for alpha, p in alpha_runs.items()}
    records += candidates.values()
    chosen_alpha = study.select_on_validation(candidates)  # ties: the first listed
    logging.info("Chose alpha=%g on the validation split", chosen_alpha)

    # The scratch control and every temperature at the chosen alpha, every seed (the chosen alpha's
    # run at alpha_temperature on the first seed is the one above, re-used).
    sweep = {t: runner.distilled(chosen_alpha, t) for t in temperatures}
    runner.run([runner.scratch(), *sweep.values()], seeds)
    scratch = [runner.record(seed, "scratch", f"scratch seed {seed}", role="scratch", seed=seed) for seed in seeds]
    distilled = {t: [runner.record(seed, p.name, f"distilled T={t:g} seed {seed}", role="distilled", seed=seed,
                                   alpha=chosen_alpha, temperature=t) for seed in seeds]
                 for t, p in sweep.items()}
    records += scratch + [r for t in temperatures for r in distilled[t]]

    summary = [_mean_record("scratch", scratch, role="scratch_mean")]
    for t in temperatures:
        summary.append(_mean_record(f"distilled T={t:g}", distilled[t], role="distilled_mean", temperature=t,
                                    alpha=chosen_alpha))
    best = summary[1:][study.select_on_validation(dict(enumerate(summary[1:])))]
    best["best_by_validation"] = True
    gain = 100 * (best["accuracy"] - summary[0]["accuracy"])
    logging.info("Best T=%g (validation): %.2f%% vs scratch %.2f%% (%+.2f pts)", best["temperature"],
                 100 * best["accuracy"], 100 * summary[0]["accuracy"], gain)

    if hint_layers:
        hinted_run = runner.distilled(chosen_alpha, best["temperature"], hint=":".join(hint_layers))
        runner.run([hinted_run], seeds)
        hinted = [runner.record(seed, hinted_run.name, f"hint {hint} T={best['temperature']:g} seed {seed}", role="hint",
                                seed=seed, alpha=chosen_alpha, temperature=best["temperature"]) for seed in seeds]
        records += hinted
        summary.append(_mean_record(f"distilled T={best['temperature']:g} + hint {hint}", hinted, role="hint_mean",
                                    temperature=best["temperature"], alpha=chosen_alpha, hint_weight=hint_weight))
    records += summary

    prune_rows, prune_selection, prune_gain = [], None, None
    if prune_sparsity > 0 and prune_seeds:
        tag = f"prune {100 * prune_sparsity:g}%"
        hint_name = prune_hint_layers[0] if prune_hint_layers else None
        prune_hint_spec = ":".join(prune_hint_layers) if prune_hint_layers else None
        # alpha, T and the hint weight of prune + distill chosen on the validation split (first
        # prune seed): the pruned student is the teacher's own architecture, not the sweep's student.
        seed0 = prune_seeds[0]
        grid = {(a_, t_, w_): runner.pruned(a_, t_, prune_hint_spec, w_)
                for a_ in prune_alphas for t_ in prune_temperatures for w_ in prune_hint_weights}
        runner.run(grid.values(), [seed0], start="baseline")
        prune_candidates = {
            (alpha, t, w): runner.record(seed0, p.name, f"{tag} + distill alpha={alpha:g} T={t:g} hint={w:g} seed {seed0}",
                                         role="prune_selection", seed=seed0, alpha=alpha, temperature=t, hint=hint_name,
                                         hint_weight=w)
            for (alpha, t, w), p in grid.items()}
        records += prune_candidates.values()
        chosen = study.select_on_validation(prune_candidates)  # ties: first in grid
        p_alpha, p_temp, p_weight = chosen
        logging.info("Chose alpha=%g T=%g hint weight %g for prune + distill on the validation split", *chosen)
        prune_selection = dict(candidates=prune_candidates, chosen=chosen)
        arms = [("fine-tune", None, 0.0), ("distill", p_alpha, p_weight)]
        if p_weight:
            arms.append(("distill-logits", p_alpha, 0.0))  # the same alpha and T without the hint
        # The chosen settings' run on the first prune seed is the selection's, re-used.
        arm_runs = {label: runner.pruned(alpha, None if alpha is None else p_temp, prune_hint_spec, w)
                    for label, alpha, w in arms}
        runner.run(arm_runs.values(), prune_seeds, start="baseline")
        for label, alpha, w in arms:
            extra = {} if alpha is None else {"alpha": alpha, "temperature": p_temp, "hint": hint_name if w else None,
                                              "hint_weight": w}
            runs = [runner.record(seed, arm_runs[label].name, f"{tag} + {label} seed {seed}", role=f"prune_{label}",
                                  seed=seed, **extra) for seed in prune_seeds]
            records += runs
            shown = {"distill-logits": "distill, logits"}.get(label, label)
            mean = _mean_record(f"{tag} + {shown}", runs, role=f"prune_{label}_mean",
                                sparsity=statistics.fmean(r["sparsity"] for r in runs), **extra)
            prune_rows.append(mean)
        records += prune_rows
        prune_gain = 100 * (prune_rows[1]["accuracy"] - prune_rows[0]["accuracy"])
        logging.info("%s + distill %.3f%% vs + fine-tune %.3f%% (%+.3f pts, %d seeds)", tag,
                     100 * prune_rows[1]["accuracy"], 100 * prune_rows[0]["accuracy"], prune_gain, len(prune_seeds))

    total_s = time.perf_counter() - t_start
    resolved = dict(args, chosen_alpha=chosen_alpha, best_temperature=best["temperature"],
                    gain_points=gain, prune_gain_points=prune_gain, total_seconds=total_s)
    if prune_selection:
        resolved["prune_chosen"] = dict(zip(("alpha", "temperature", "hint_weight"), prune_selection["chosen"], strict=True))
    study.write_outputs(output_dir, records, resolved, title="Distillation", columns=_COLUMNS,
                        summary=[r for r in records if r["role"].endswith("_mean")],
                        report=_report(records, summary, best, prune_rows, prune_selection, args, chosen_alpha,
                                       candidates, gain, total_s))
    return records


def _report(records, summary, best, prune_rows, prune_selection, args, chosen_alpha, candidates, gain,
            total_s) -> str:
    teacher_rec = records[0]
    scratch = summary[0]
    ratio = teacher_rec["params"] / scratch["params"]
    parts = [
        f"# Distillation: {args['teacher']} teacher -> {args['student']} student on {args['dataset']}\n",
        f"Teacher: {_pct(teacher_rec['accuracy'])}% test accuracy, {teacher_rec['params']:,} params, "
        f"{teacher_rec['size_bytes']:,} bytes (float32 flatbuffer), {teacher_rec['latency_ms']:.4f} ms. "
        f"Student: {scratch['params']:,} params ({100 / ratio:.1f}% of the teacher, {ratio:.1f}x smaller).\n",
        f"**Best distilled student (T={best['temperature']:g}, alpha={chosen_alpha:g}, chosen on validation): "
        f"{_pm(best)}% vs {_pm(scratch)}% from scratch, {gain:+.2f} points "
        f"(mean of {len(args['seeds'])} seeds, {args['epochs']} epochs each).**\n",
        "## Temperature sweep (test accuracy per seed)\n",
        study.spread_note(args["seeds"]) + "\n",
        _summary_table(summary, args["seeds"]),
        f"\n## Alpha selection (seed {args['seeds'][0]}, n=1, T={args['alpha_temperature']:g}, validation split)\n",
        "| alpha | val accuracy (%) | test accuracy (%) |\n|---:|---:|---:|\n"
        + "".join(f"| {a:g}{' (chosen)' if a == chosen_alpha else ''} | {_pct(r['val_accuracy'])} | {_pct(r['accuracy'])} |\n"
                  for a, r in candidates.items()),
    ]
    if prune_rows:
        ft, dist = prune_rows[0], prune_rows[1]
        wins = sum(d > f for d, f in zip(dist["seed_accuracies"], ft["seed_accuracies"], strict=True))
        parts += [
            f"\n## Prune {100 * args['prune_sparsity']:g}% + recovery ({args['prune_epochs']} epochs, "
            f"seeds {', '.join(map(str, args['prune_seeds']))})\n",
            f"**Prune + distill {_pm(dist)}% vs prune + fine-tune {_pm(ft)}%: "
            f"{100 * (dist['accuracy'] - ft['accuracy']):+.3f} points (mean of {len(args['prune_seeds'])} seeds, "
            f"better on {wins} of them), equal epochs.**\n",
            _prune_table(prune_rows, args["prune_seeds"]),
            f"\nalpha, T and hint weight of prune + distill chosen on the validation split (n=1, seed "
            f"{args['prune_seeds'][0]}; hint: {args['prune_hint'] or 'none'}):\n",
            "| alpha | T | hint weight | val accuracy (%) | test accuracy (%) |\n|---:|---:|---:|---:|---:|\n"
            + "".join(f"| {a:g} | {t:g} | {w:g}{' (chosen)' if (a, t, w) == prune_selection['chosen'] else ''} | "
                      f"{_pct(r['val_accuracy'])} | {_pct(r['accuracy'])} |\n"
                      for (a, t, w), r in prune_selection["candidates"].items()),
        ]
    parts.append(
        f"\nProtocol: {args['teacher']} trained with the baseline protocol; every student trained for "
        f"{args['epochs']} epochs with Adam {args['learning_rate']:g}, batch {args['batch_size']}, the last "
        f"{args['validation_split']:g} of the training split held out, weights of the best validation epoch kept; "
        "the same seed gives the same initial weights and data order to the scratch and distilled students. "
        "Distillation loss: alpha * CE(y, s) + (1 - alpha) * T^2 * KL(softmax(t/T) || softmax(s/T)) "
        "(+ hint weight * MSE of the hint layer's features, for prune + distill with a hint). "
        "alpha and the best T are chosen on the validation split, never on the test set. Accuracy over the "
        "whole test set in Keras; bytes are the float32 flatbuffer (gzip: zlib-9); latency is the median "
        "single-sample Keras call (kc.evaluation.evaluate of the Keras model; noisy on a shared machine). "
        f"Total run time {total_s / 60:.1f} min.\n"
    )
    return "\n".join(parts)


def main(argv):
    del argv
    values = study.flag_values(_FLAG_NAMES)
    # Every argument of _run but these two is the flag of the same name.
    names = [p for p in inspect.signature(_run).parameters if p not in ("output_dir", "flag_values", "resume_dir")]
    run(FLAGS.output_dir, **{name: values[name] for name in names}, flag_values=values)
    if not kc.models.is_chief(kc.models.get_strategy(FLAGS.strategy)):
        return  # only the chief wrote the report
    with open(os.path.join(FLAGS.output_dir, "report.md"), encoding="utf-8") as f:
        print(f.read())
    print(f"Wrote {FLAGS.output_dir}/results.json, report.md, results.csv and flags.json.")


if __name__ == "__main__":
    define_flags()
    app.run(main)
