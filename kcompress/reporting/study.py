"""Studies: an experiment as data, run over seeds by one resumable runner.

A study is a list of :class:`Entry` objects, ``(name, start model, Pipeline)``, run for
every seed. Each finished entry is stored in ``<output_dir>/seed<N>/variants/<name>.json``
with a fingerprint of everything its result depends on, so a re-run with the same flags
skips it and an interrupted run loses nothing. :func:`write_outputs` then writes
``results.json`` (every seed's records plus their mean ± std), ``results.csv``,
``report.md`` (tables of mean ± std over the seeds), an accuracy-vs-size plot and
``flags.json`` (the flags, the command and the machine: CPU model and ISA, cores,
library versions).

The flags every experiment script shares (dataset, model, seeds, output_dir, data_dir,
max_train, max_test, batch_size, strategy, latency_runs, robustness_samples) are
defined once, by :func:`define_flags`.

Example:
    >>> from kcompress.pipeline import Export, Evaluate, Pipeline, Prune, Train
    >>> from kcompress.reporting import study
    >>> baseline = study.Entry("baseline", "model", Pipeline([Train(2), Export("int8"), Evaluate()], name="baseline"))
    >>> entries = [study.Entry("prune_80", "baseline", Pipeline([Prune(0.8, epochs=1), Export("int8"), Evaluate()],
    ...                                                        name="prune_80"))]
    >>> runner = study.Study(entries, baseline=baseline, settings={"dataset": "mnist"},
    ...                      build=lambda start, seed: kc.models.get("lenet5", seed=seed))
    >>> done = runner.run(ds, "runs/s", seeds=[0, 1])   # {seed: {name: record}}
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence

from absl import flags, logging

from kcompress._files import save_model_atomic, write_atomic
from kcompress.reporting.plots import plot_pareto
from kcompress.reporting.tables import _json_default, to_csv, to_markdown

__all__ = ["Entry", "Study", "define_flags", "flag_values", "fingerprint", "load_dataset", "machine_info",
           "parse_seeds", "records_over_seeds", "run_seeds", "select_on_validation", "seed_dir", "spread_note", "summarize",
           "train_or_load", "workspace", "write_outputs"]

# ------------------------------------------------------------------ flags

_ISA = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
_SHARED = ("dataset", "model", "seeds", "output_dir", "data_dir", "max_train", "max_test", "batch_size", "strategy",
           "latency_runs", "robustness_samples")


def define_flags(define_own: Callable[[], None] | None = None, *, output_dir: str, omit: Sequence[str] = (),
                 help_texts: dict | None = None, aliases: dict | None = None, **defaults) -> list[str]:
    """Defines the flags every experiment shares, then the script's own; returns all their names.

    Args:
        define_own: defines the script's own flags (called after the shared ones).
        output_dir: the default ``--output_dir``.
        omit: shared flags the script does not take (``latency_runs`` and
            ``robustness_samples`` are only defined when a default is given for them).
        help_texts: help texts that replace the shared ones, by flag name.
        aliases: ``{old_name: flag}``: old flag names that keep working (``absl`` aliases).
        **defaults: defaults of the shared flags (``dataset="mnist"``, ``model="lenet5"``,
            ``seeds=["0"]``, ``batch_size=256``, ``strategy="default"``, ...).

    Returns:
        The names of the flags defined (for :func:`flag_values`), sorted.
    """
    import kcompress as kc

    unknown = set(defaults) - set(_SHARED)
    if unknown:
        raise ValueError(f"defaults names {sorted(unknown)}, not among the shared flags {list(_SHARED)}.")
    omit = set(omit) | {name for name in ("latency_runs", "robustness_samples") if name not in defaults}
    help_texts = dict(help_texts or {})
    before = set(flags.FLAGS)
    d = dict(dataset="mnist", model="lenet5", seeds=["0"], data_dir=None, max_train=None, max_test=None,
             batch_size=256, strategy="default") | defaults

    def text(name, default_help):
        return help_texts.get(name, default_help)

    if "dataset" not in omit:
        flags.DEFINE_enum("dataset", d["dataset"], sorted(kc.data.DATASETS), text("dataset", "Dataset."))
    if "model" not in omit:
        flags.DEFINE_enum("model", d["model"], sorted(kc.models.MODELS), text("model", "Zoo model."))
    if "seeds" not in omit:
        flags.DEFINE_list("seeds", list(d["seeds"]), text("seeds", "Seeds: every variant runs once per seed; the "
                          "tables show mean ± std over them (--seed=N is --seeds=N)."))
    flags.DEFINE_string("output_dir", output_dir, text("output_dir", "Folder for results and artefacts (re-use to "
                        "resume)."))
    if "data_dir" not in omit:
        flags.DEFINE_string("data_dir", d["data_dir"], "Folder with <dataset>.npz (else $KCOMPRESS_DATA_DIR, then tfds).")
    if "max_train" not in omit:
        flags.DEFINE_integer("max_train", d["max_train"], "Use only the first N training samples (quick runs).")
    if "max_test" not in omit:
        flags.DEFINE_integer("max_test", d["max_test"], "Evaluate on the first N test samples only (quick runs).")
    if "batch_size" not in omit:
        flags.DEFINE_integer("batch_size", d["batch_size"], text("batch_size", "Batch size."), lower_bound=1)
    if "strategy" not in omit:
        flags.DEFINE_enum("strategy", d["strategy"], list(kc.models.STRATEGIES), text(
            "strategy", "tf.distribute strategy for training; multiworker reads TF_CONFIG, only the chief writes."))
    if "latency_runs" not in omit:
        flags.DEFINE_integer("latency_runs", d["latency_runs"], text("latency_runs", "Timed single-sample "
                             "inferences per flatbuffer."), lower_bound=1)
    if "robustness_samples" not in omit:
        flags.DEFINE_integer("robustness_samples", d["robustness_samples"], text(
            "robustness_samples", "Test samples for the perturbed-input accuracies."), lower_bound=1)
    if define_own is not None:
        define_own()
    names = sorted(set(flags.FLAGS) - before)
    aliases = dict(aliases or {})
    if "seeds" not in omit:
        aliases.setdefault("seed", "seeds")
    for old, new in aliases.items():
        flags.DEFINE_alias(old, new)
    return names


def flag_values(names: Sequence[str]) -> dict:
    """``{name: value}`` of the parsed absl flags ``names``."""
    return {name: flags.FLAGS[name].value for name in names}


def parse_seeds(values, name: str = "seeds") -> list[int]:
    """``["0", "1"]`` (or ints) -> ``[0, 1]``; a non-empty list of distinct non-negative ints."""
    if isinstance(values, (str, int)):
        values = [values]
    try:
        seeds = [int(v) for v in values]
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a list of non-negative ints, got {values!r}.") from err
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise ValueError(f"{name} must be a non-empty list of distinct non-negative ints, got {values!r}.")
    return seeds


def load_dataset(args: dict):
    """``kc.data.load(args["dataset"], args["data_dir"])``, cut to ``max_train`` / ``max_test``."""
    from kcompress import data

    ds = data.load(args.get("dataset", "mnist"), data_dir=args.get("data_dir"))
    if args.get("max_train") or args.get("max_test"):
        ds = ds.take(train=args.get("max_train"), test=args.get("max_test"))
    return ds


@contextlib.contextmanager
def workspace(args: dict):
    """``with workspace(args) as out:`` the folder to write into, under ``args["strategy"]``'s scope.

    Every worker of a multi-worker cluster runs the script: models are built in the
    strategy's scope, and only the chief writes ``args["output_dir"]`` (the others write
    into a temporary folder, ``kcompress.models.writable_dir``).
    """
    from kcompress import models

    strategy = models.get_strategy(args.get("strategy") or "default")
    with models.writable_dir(args["output_dir"], strategy) as out, strategy.scope():
        os.makedirs(out, exist_ok=True)
        yield out


def train_or_load(ds, args: dict, seed: int, validation_split: float = 0.1):
    """The model a study starts from: ``args["baseline_model"]`` loaded, or ``args["model"]`` trained.

    Training: ``args["epochs"]`` epochs of Adam ``args["learning_rate"]``, batch
    ``args["batch_size"]``, the last ``validation_split`` of the training split held out
    and the best validation epoch kept (when there is one).

    Returns:
        ``(model, training seconds)`` (0.0 when loaded).
    """
    from kcompress import models
    from kcompress._keras import keras

    if args.get("baseline_model"):
        logging.info("Loading the baseline from %s", args["baseline_model"])
        return keras.models.load_model(args["baseline_model"], compile=False), 0.0
    keras.utils.set_random_seed(seed)
    model = models.get(args["model"], ds.input_shape, ds.num_classes, seed=seed)
    models.compile_classifier(model, args["learning_rate"])
    t0 = time.perf_counter()
    models.fit(model, ds, epochs=args["epochs"], batch_size=args["batch_size"], validation_split=validation_split,
               restore_best=validation_split > 0)
    return model, time.perf_counter() - t0


def machine_info() -> dict:
    """The machine a result was measured on: CPU model and ISA flags, cores, Python and library versions."""
    from importlib import metadata

    import kcompress

    cpu = platform.processor() or platform.machine()
    isa = []
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            info = f.read()
        cpu = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), cpu)
        cpu_flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
        isa = [f for f in _ISA if f in cpu_flags]
    except OSError:
        pass
    versions = {}
    for dist in ("tensorflow", "tf_keras", "tensorflow-model-optimization", "ai-edge-litert", "numpy"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return {"cpu": cpu, "isa": isa, "cores": os.cpu_count(), "arch": platform.machine(),
            "python": platform.python_version(), "tensorflow": versions["tensorflow"], "kcompress": kcompress.__version__,
            "versions": versions}


def _command() -> str:
    return " ".join([os.path.basename(sys.argv[0]), *sys.argv[1:]])


# ------------------------------------------------------------------ resume

def fingerprint(obj) -> str:
    """A short hash of ``obj`` (JSON, keys sorted): what a stored result was made with."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _load_done(path, print_):
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            done = json.load(f)
    except (OSError, ValueError):
        logging.warning("Ignoring unreadable %s; it runs again.", path)
        return None
    if done.get("fingerprint") != print_:
        logging.info("%s was made with other settings; it runs again.", path)
        return None
    return done


def seed_dir(output_dir: str, seed: int) -> str:
    """Where the artefacts of one seed go: ``<output_dir>/seed<N>``."""
    return os.path.join(output_dir, f"seed{seed}")


def _progress(i, total, what, elapsed):
    logging.info("[%d/%d] %s — %.0f s elapsed", i, total, what, elapsed)
    print(f"==> [{i}/{total}] {what} ({elapsed:.0f} s elapsed)", flush=True)


@dataclasses.dataclass
class Entry:
    """One variant of a study.

    Args:
        name: the variant's name (records, files).
        start: the model the pipeline starts from: ``"baseline"`` (the study's trained
            baseline), the name of an earlier entry (the model its pipeline ended with, so
            e.g. "prune, then QAT" continues from the "prune" entry instead of pruning again),
            or a name the study's ``build`` turns into a fresh model.
        pipeline: a :class:`kcompress.pipeline.Pipeline`.
        stage_seeds: run the pipeline with ``seed=`` the study's seed, so every stage
            starts from its own seed (a ``kcompress.compress`` recipe repeats itself so).
    """

    name: str
    start: str
    pipeline: object
    stage_seeds: bool = False


class Study:
    """Runs entries over seeds: the baseline first (saved, the teacher and a starting point), then the others.

    Args:
        entries: the :class:`Entry` objects, in order.
        build: ``build(start, seed)`` -> a fresh model for an entry whose ``start`` is neither
            ``"baseline"`` nor an earlier entry's name.
        settings: everything the results depend on (e.g. the flags); stored results made
            with other settings run again.
        baseline: an optional :class:`Entry` trained first; its model is saved as
            ``seed<N>/baseline.keras`` and is the teacher of every other entry.
        baseline_settings: the keys of ``settings`` the baseline depends on (default: all);
            changing another setting re-runs the entries, not the baseline.
        strategy: an optional ``tf.distribute`` strategy every pipeline trains under.
    """

    def __init__(self, entries: Sequence[Entry], build: Callable, settings: dict, baseline: Entry | None = None,
                 baseline_settings: Sequence[str] | None = None, strategy=None):
        from kcompress.pipeline import Pipeline

        for e in [*entries, *([baseline] if baseline else [])]:
            if not isinstance(e, Entry) or not isinstance(e.pipeline, Pipeline):
                raise TypeError(f"entries must be Entry objects holding a Pipeline, got {e!r}.")
        names = [e.name for e in entries]
        if len(set(names)) != len(names) or (baseline and baseline.name in names):
            raise ValueError(f"entry names must be distinct, got {names}.")
        if baseline is None and any(e.start == "baseline" for e in entries):
            raise ValueError("an entry starts from 'baseline', but the study has no baseline entry.")
        for i, e in enumerate(entries):
            if e.start in names[i:]:
                raise ValueError(f"entry {e.name!r} starts from {e.start!r}, which is not an earlier entry: an entry can "
                                 f"start from the baseline, an entry listed before it, or a model `build` makes.")
        # The entries a later entry starts from: their final models are kept as seed<N>/variants/<name>.keras.
        self._continued = {e.start for e in entries} & set(names)
        self.entries, self.build, self.settings = list(entries), build, dict(settings)
        self.baseline, self.strategy = baseline, strategy
        self.baseline_settings = list(self.settings) if baseline_settings is None else list(baseline_settings)

    def _model_file(self, name: str) -> str | None:
        """Where (in a seed's folder) an entry's final model is kept: only for entries a later entry starts from."""
        return os.path.join("variants", f"{name}.keras") if name in self._continued else None

    def run(self, dataset, output_dir: str, seeds: Sequence[int], resume_dir: str | None = None
            ) -> dict[int, dict[str, dict]]:
        """Runs (or resumes) every entry for every seed; returns ``{seed: {name: record}}``.

        A record is ``{"fingerprint", "pipeline", "start", "seed", "seconds", "records", "log"}``;
        its ``records`` are the pipeline's, each with ``"seed"`` added.

        Args:
            output_dir: where results are written.
            resume_dir: where finished results are also looked for (default: ``output_dir``
                only). A worker of a multi-worker cluster writes into a temporary folder
                (``kcompress.models.writable_dir``) but resumes from the chief's shared
                ``output_dir``, so every worker skips the same finished entries.
        """
        import kcompress as kc

        plan = ([self.baseline] if self.baseline else []) + self.entries
        total, i, t_start = len(plan) * len(seeds), 0, time.perf_counter()
        out = {}
        for seed in seeds:
            folder = seed_dir(output_dir, seed)
            os.makedirs(os.path.join(folder, "variants"), exist_ok=True)
            bases = [folder] + ([seed_dir(resume_dir, seed)] if resume_dir is not None else [])

            def saved(relative, bases=bases):  # a finished result: written here, or found in resume_dir
                return next((os.path.join(b, relative) for b in bases if os.path.isfile(os.path.join(b, relative))), None)
            done: dict[str, dict] = {}
            for entry in plan:
                i += 1
                is_base = entry is self.baseline
                config = entry.pipeline.get_config()
                if is_base:
                    key = {k: self.settings[k] for k in self.baseline_settings} | {"seed": seed, "pipeline": config}
                else:
                    key = {"settings": self.settings, "seed": seed, "pipeline": config, "start": entry.start,
                           "baseline": done[self.baseline.name]["fingerprint"] if self.baseline else None}
                    if entry.start in done:  # an earlier entry's model: its result is part of this one's
                        key["start_fingerprint"] = done[entry.start]["fingerprint"]
                fp = fingerprint(key)
                path = os.path.join(folder, "variants", f"{entry.name}.json")
                model_file = "baseline.keras" if is_base else self._model_file(entry.name)
                previous = next((p for b in bases if (p := _load_done(os.path.join(b, "variants", f"{entry.name}.json"),
                                                                      fp)) is not None), None)
                if previous is not None and (model_file is None or saved(model_file)):
                    logging.info("[%d/%d] seed %d, %s: finished earlier, re-using %s", i, total, seed, entry.name, path)
                    done[entry.name] = previous
                    continue
                _progress(i, total, f"seed {seed}, {entry.name}: {entry.pipeline}"
                          + (f" (from {entry.start})" if entry.start in done else ""), time.perf_counter() - t_start)
                kc.keras.utils.set_random_seed(seed)
                t0 = time.perf_counter()
                if is_base:
                    model = self.build(entry.start, seed)
                    result = entry.pipeline.run(dataset, model=model, output_dir=folder, strategy=self.strategy)
                else:
                    teacher = (kc.keras.models.load_model(saved("baseline.keras"), compile=False)
                               if self.baseline else None)
                    if entry.start == "baseline":
                        model = teacher
                    elif entry.start in done:
                        model = kc.keras.models.load_model(saved(self._model_file(entry.start)), compile=False)
                    else:
                        model = self.build(entry.start, seed)
                    result = entry.pipeline.run(dataset, model=model, teacher=teacher, output_dir=folder,
                                                strategy=self.strategy, seed=seed if entry.stage_seeds else None)
                if model_file is not None:  # every worker: under multiworker, output_dir is the chief's or a temporary one
                    save_model_atomic(result.model, os.path.join(folder, model_file))
                record = {"fingerprint": fp, "pipeline": config, "start": entry.start, "seed": seed,
                          "seconds": time.perf_counter() - t0,
                          "records": [dict(r, seed=seed) for r in result.records], "log": result.log}
                write_atomic(path, json.dumps(record, indent=2, default=str) + "\n")
                done[entry.name] = record
            out[seed] = done
        logging.info("All %d runs done in %.0f s.", total, time.perf_counter() - t_start)
        return out


def run_seeds(fn: Callable[[int, str], list[dict]], seeds: Sequence[int], output_dir: str, settings: dict,
              name: str = "study") -> dict[int, list[dict]]:
    """Runs ``fn(seed, seed_dir)`` for every seed, resumable; returns ``{seed: records}``.

    For studies whose variants are not (yet) Pipelines: ``fn`` does one seed's whole
    study into ``seed_dir`` and returns its records. The records of a finished seed are
    stored in ``seed<N>/records.json`` with a fingerprint of ``settings``; a re-run with
    the same settings re-uses them.
    """
    out, t_start = {}, time.perf_counter()
    for i, seed in enumerate(seeds, start=1):
        folder = seed_dir(output_dir, seed)
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, "records.json")
        fp = fingerprint({"settings": settings, "seed": seed})
        previous = _load_done(path, fp)
        if previous is not None:
            logging.info("[%d/%d] %s, seed %d: finished earlier, re-using %s", i, len(seeds), name, seed, path)
            out[seed] = previous["records"]
            continue
        _progress(i, len(seeds), f"{name}, seed {seed}", time.perf_counter() - t_start)
        t0 = time.perf_counter()
        records = [dict(r, seed=seed) for r in fn(seed, folder)]
        write_atomic(path, json.dumps({"fingerprint": fp, "seed": seed, "seconds": time.perf_counter() - t0,
                                       "records": records}, indent=2, default=_json_default) + "\n")
        out[seed] = records
    return out


def records_over_seeds(args: dict, one_seed: Callable[[object, dict], list[dict]], output_dir: str,
                       name: str = "study") -> list[dict]:
    """Every seed's records of a script: ``one_seed(dataset, seed_args)`` per ``args["seeds"]``, resumable.

    ``seed_args`` is ``args`` with ``"seed"`` and ``"output_dir"`` (``seed<N>/``) of that seed;
    the settings fingerprinted are ``args`` less the folders and the seed list.
    """
    seeds = parse_seeds(args["seeds"])
    ds = load_dataset(args)
    settings = {k: v for k, v in args.items() if k not in ("output_dir", "data_dir", "seeds")}
    done = run_seeds(lambda seed, folder: one_seed(ds, {**args, "seed": seed, "output_dir": folder}), seeds,
                     output_dir, settings, name=name)
    return [r for seed in seeds for r in done[seed]]


def select_on_validation(candidates: dict, key: str = "val_accuracy"):
    """The key of the candidate record with the highest ``key`` (ties: the first listed).

    Args:
        candidates: ``{choice: record}``, e.g. ``{alpha: record}``, in the order tried.

    Returns:
        The chosen key.
    """
    if not candidates:
        raise ValueError("candidates must hold at least one record to select from.")
    return max(candidates, key=lambda k: candidates[k][key])


# ------------------------------------------------------------------ spread and outputs

def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def summarize(records: list[dict], by: Sequence[str] = ("variant",), seed_key: str = "seed") -> list[dict]:
    """One row per group of ``records`` (same values of ``by``): the mean over seeds, ``<key>_std`` and ``n``.

    Numbers become their mean (an int column stays int when every seed agrees) and get a
    ``<key>_std`` (sample standard deviation, 0.0 for one seed); other values are kept
    when every seed agrees, else ``None``. Groups keep the order of first appearance.

    Returns:
        Rows with the ``by`` keys, the means, the stds, ``n`` and ``seeds``.
    """
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault(tuple(r.get(k) for k in by), []).append(r)
    rows = []
    for rs in groups.values():
        row = {}
        keys: list[str] = []
        for r in rs:
            keys.extend(k for k in r if k not in keys)
        for k in keys:
            if k == seed_key:
                continue
            values = [r.get(k) for r in rs]
            if k in by:
                row[k] = values[0]
            elif all(_is_number(v) for v in values):
                if all(isinstance(v, int) for v in values) and len(set(values)) == 1:
                    row[k] = values[0]
                else:
                    row[k] = statistics.fmean(values)
                row[f"{k}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
            else:
                same = all(v == values[0] for v in values)
                row[k] = values[0] if same else None
        row["n"] = len(rs)
        row["seeds"] = [r.get(seed_key) for r in rs]
        rows.append(row)
    return rows


def spread_note(seeds: Sequence[int]) -> str:
    """The sentence under a table saying what its numbers are over."""
    if len(seeds) == 1:
        return f"One seed ({seeds[0]}), n=1: each number is that run's value."
    return (f"Mean ± std (sample standard deviation) over seeds {', '.join(map(str, seeds))} (n={len(seeds)}); "
            "a value without ± was the same for every seed.")


def write_outputs(output_dir: str, records: list[dict], args: dict, *, title: str, notes: str = "",
                  columns: Sequence[str], by: Sequence[str] = ("variant",), summary: list[dict] | None = None,
                  pareto: dict | None = None, extra: dict | None = None, report: str | None = None) -> list[dict]:
    """Writes results.json, results.csv, report.md, flags.json (and a plot) of a study; returns the summary.

    Args:
        records: every seed's records (each with ``"seed"``).
        args: the resolved flags (saved in flags.json with the command and the machine).
        title, notes, columns: the report's title, the text under its table and the table's columns.
        by: the keys a variant is told apart by (rows of the summary).
        summary: the summary rows (default: ``summarize(records, by)``).
        pareto: if given, ``plot_pareto`` keyword arguments (``label``, ``title``) of the
            summary rows, written as ``pareto.png``.
        extra: more keys for results.json and flags.json (``{"results": {...}, "flags": {...}}``).
        report: the whole report.md text instead of title + table + notes.

    ``results.json`` is ``{"records": [...], "summary": [...], "flags": {...}}``; results.csv
    holds every seed's records; report.md the summary table (mean ± std) and the notes.
    """
    extra = extra or {}
    summary = summarize(records, by) if summary is None else summary
    resolved = dict(args, **extra.get("flags", {}), machine=machine_info(), command=_command())
    write_atomic(os.path.join(output_dir, "flags.json"), json.dumps(resolved, indent=2, default=_json_default) + "\n")
    payload = {"records": records, "summary": summary, **extra.get("results", {}), "flags": resolved}
    write_atomic(os.path.join(output_dir, "results.json"), json.dumps(payload, indent=2, default=_json_default) + "\n")
    write_atomic(os.path.join(output_dir, "results.csv"), to_csv(records))
    if pareto is not None:
        plot_pareto([r for r in summary if r.get("size_bytes") is not None], os.path.join(output_dir, "pareto.png"),
                    **pareto)
    seeds = sorted({r.get("seed") for r in records if r.get("seed") is not None})
    if report is None:
        report = (f"# {title}\n\n" + to_markdown(summary, columns) + f"\n{spread_note(seeds)}\n"
                  + (f"\n{notes.strip()}\n" if notes else ""))
    write_atomic(os.path.join(output_dir, "report.md"), report)
    return summary
