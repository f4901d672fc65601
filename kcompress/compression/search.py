"""``compress``: the smallest runnable int8 flatbuffer that meets a budget.

The search is greedy shrink-and-recover, in the spirit of NetAdapt (Yang et al.,
2018) and AMC (He et al., 2018):

1. **Explore.** At every step each channel group (``kcompress.pruning.channel_groups``)
   proposes a cut that saves about ``step_fraction`` of the model's weight bytes, and
   each large Dense layer proposes a low-rank (SVD) split that saves as much. Every
   proposal is scored by its validation accuracy without training (a sensitivity
   measurement); the best is applied and recovered for ``step_epochs`` by
   distillation from the original model. The models of the steps form a trajectory
   from large to small; each is measured as an int8 flatbuffer in LiteRT.
2. **Finish.** Candidates on the trajectory are fully recovered (``recovery_epochs``
   of distillation, best validation epoch kept), quantization-aware trained and
   exported as slim int8 flatbuffers (per-channel after QAT; per-tensor and
   per-channel post-training as alternatives), then measured in LiteRT on the
   validation split. The gain finishing brings (finished minus explored accuracy)
   predicts each candidate's finished accuracy; the smallest candidate predicted to
   keep the accuracy is finished next, until none smaller is expected to (usually one
   to three finishes). With only size limits, the largest candidate that fits.

Decisions use the validation split (the last 10% of the training split, which
Keras' ``validation_split`` holds out); the test split only reports the winner.
Every step and finished candidate is written to ``output_dir``, so a run that is
stopped resumes where it was.

A :class:`kcompress.data.StreamingDataset` is read in batches (validation, test,
calibration); under ``MultiWorkerMirroredStrategy`` every worker runs the same search
(trainings all-reduced, everything else computed by each worker alike) and only the
chief writes ``output_dir``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import time

import numpy as np
from absl import logging

from kcompress._files import save_model_atomic, write_atomic
from kcompress._keras import check_model, copy_model, keras, tf
from kcompress.compression.budget import Budget, BudgetError
from kcompress.compression.workers import Workers
from kcompress.data import Dataset
from kcompress.pruning.sensitivity import accuracy as _accuracy
from kcompress.reporting.tables import _json_default
from kcompress.validation import (
    check_bool,
    check_fraction,
    check_int,
    check_number,
    check_temperature,
)

_STATE = "compress_state.json"
_VERSION = 1


@dataclasses.dataclass
class CompressionResult:
    """What :func:`compress` found.

    Attributes:
        flatbuffer: the winner's int8 flatbuffer bytes.
        model: the Keras model it was converted from (quantization-aware after QAT).
        float_model: the winner before quantization (plain tf_keras layers).
        records: every candidate measured, as dicts (``phase`` explore / finish / winner,
            ``size_bytes``, ``val_accuracy`` of the flatbuffer in LiteRT, ``params``,
            ``macs``, ``arena_bytes``, ``widths``, ``meets_budget``; the winner also
            ``test_accuracy``).
        recipe: a :class:`kcompress.pipeline.Pipeline` that reproduces the winner from the
            original model (``recipe.run(ds, model=original, seed=seed)``).
        winner: the winner's record.
        baseline: the original model's record (float32 and int8 flatbuffers, accuracies).
        budget: the :class:`Budget` it met.
        plot_path: the Pareto plot (with ``output_dir``), else None.
    """

    flatbuffer: bytes
    model: keras.Model
    float_model: keras.Model
    records: list
    recipe: object
    winner: dict
    baseline: dict
    budget: Budget
    plot_path: str | None = None

    def to_markdown(self) -> str:
        """The candidates as a table, winner first."""
        from kcompress.compression.report import result_markdown

        return result_markdown(self)


# ----------------------------------------------------------------------------- measuring


def _leaf_weights(model):
    from kcompress.evaluation.metrics import _leaf_layers

    for _, layer in _leaf_layers(model):
        yield layer


def estimated_int8_bytes(model) -> int:
    """Weight bytes of ``model`` as an int8 flatbuffer: 1 per kernel element, 4 per bias element
    (BatchNormalization folds into the convolution before it)."""
    total = 0
    for layer in _leaf_weights(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            continue
        for w in layer.trainable_weights:
            n = int(np.prod(w.shape))
            total += 4 * n if "bias" in w.name else n
    return total


def _flat_accuracy(flat, batches) -> float:
    """Top-1 accuracy of a flatbuffer in LiteRT over ``(images, labels)`` batches (read one at a time)."""
    from kcompress.evaluation import litert

    interp = litert.make_interpreter(flat)
    correct = count = 0
    for x, y in batches:
        pred = litert.predict(interp, x)
        correct += int(np.sum(np.argmax(pred.reshape(len(x), -1), axis=-1) == y))
        count += len(y)
    return correct / count


def _widths(model) -> dict:
    from kcompress.pruning.channels import _Graph

    graph = _Graph(model)
    return {name: graph.size[graph.find(gid)] for name, gid in graph.own.items()}


def _fingerprint(model, dataset, config) -> str:
    h = hashlib.sha256()
    h.update(json.dumps(model.get_config(), sort_keys=True, default=str).encode())
    for w in model.get_weights():
        h.update(np.ascontiguousarray(w).tobytes())
    h.update(f"{dataset.name}:{dataset.num_train}:{dataset.num_test}".encode())
    if dataset.streams:  # the first 64 training images as they stream (equal to the arrays they were written from)
        first = next(iter(dataset.train(64, shuffle=False)))[0].numpy()
    else:
        first = dataset.x_train[:64]
    h.update(hashlib.sha256(np.ascontiguousarray(first).tobytes()).digest())
    h.update(json.dumps(config, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


# ----------------------------------------------------------------------------- the search


class _Search:
    def __init__(self, model, dataset, budget, teacher, output_dir, opts, strategy, verbose):
        self.original = model
        self.dataset = dataset
        self.budget = budget
        self.teacher = teacher
        self.output_dir = output_dir  # every worker reads it (resume); only the chief writes
        from kcompress.models.training import is_chief

        self.writes = bool(output_dir) and (strategy is None or is_chief(strategy))
        self.o = opts
        self.strategy = strategy
        self.workers = Workers(strategy)
        self.verbose = verbose
        self.t0 = time.perf_counter()
        self.trials = 0
        from kcompress.pruning.sensitivity import validation_split

        if dataset.streams:  # the tail streams for every measurement; proposals score on its start, in memory
            self.xv = self.yv = None
            self.xv_fast, self.yv_fast = validation_split(dataset, max_samples=opts["proposal_samples"])
        else:
            self.xv, self.yv = validation_split(dataset)
            n_fast = min(len(self.xv), opts["proposal_samples"])
            self.xv_fast, self.yv_fast = self.xv[:n_fast], self.yv[:n_fast]
        # The same draw as the Export stage of the recipe, so a replay calibrates alike.
        self.rep = dataset.representative(min(opts["calibration_samples"], dataset.num_train))
        self.state = {"version": _VERSION, "fingerprint": None, "baseline": None, "steps": [], "finishes": {},
                      "stopped": None}
        self.models: dict[int, keras.Model] = {}
        self.cache: dict[str, tuple] = {}  # finished step -> (flatbuffer, model, float model), never written

    # -- files
    def path(self, *parts):
        return os.path.join(self.output_dir, *parts)

    def val_batches(self):
        """The validation split as ``(images, labels)`` batches: one in-memory batch, or streamed."""
        if self.xv is not None:
            return [(self.xv, self.yv)]
        return self.dataset.validation_batches(1024)

    def keras_val_accuracy(self, model) -> float:
        return _accuracy(model, self.val_batches())

    def save_state(self):
        if self.writes:
            write_atomic(self.path(_STATE), json.dumps(self.state, indent=1, default=_json_default))

    def save_model(self, model, name) -> str | None:
        if not self.output_dir:
            return None
        path = self.path("models", name)
        if self.writes:
            save_model_atomic(model, path)
        return os.path.relpath(path, self.output_dir)  # the chief's file, on every worker

    def save_flatbuffer(self, flat, name) -> str:
        from kcompress import export

        path = self.path("finishes", name)
        if self.writes:
            export.save(flat, path)
        return os.path.relpath(path, self.output_dir)

    def load_model(self, rel):
        path = self.path(rel)
        if path.endswith(".h5"):
            from kcompress.quantization import quantize_scope

            with quantize_scope():
                return keras.models.load_model(path, compile=False)
        return keras.models.load_model(path, compile=False)

    def out_of_time(self) -> bool:
        if self.o["max_trials"] is not None and self.trials >= self.o["max_trials"]:
            return True
        if self.o["time_limit"] is None:
            return False
        # Clocks differ between workers: they stop together when one is out of time.
        return self.workers.any(time.perf_counter() - self.t0 > self.o["time_limit"])

    def scope(self):
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    # -- measuring
    def smallest_bytes(self, model) -> int:
        """Bytes of the smallest export of ``model`` (post-training int8, per-tensor scales, slim)."""
        from kcompress import export

        return len(export.to_tflite(model, "int8", representative_data=self.rep, verbose=False, slim=True,
                                    per_channel=False))

    def fits(self, record) -> bool:
        """Whether a trajectory model can fit the size limits once finished (its smallest export)."""
        return self.budget.size_ok({**record, "size_bytes": record.get("min_size_bytes", record["size_bytes"])})

    def measure(self, model, per_channel=True) -> tuple[bytes, dict]:
        """PTQ int8 slim flatbuffer of ``model`` and its record (bytes, val accuracy in LiteRT, macs, arena)."""
        from kcompress import export
        from kcompress.evaluation import keras_macs

        flat = export.to_tflite(model, "int8", representative_data=self.rep, verbose=False, slim=True,
                                per_channel=per_channel)
        return flat, self.describe(flat, model, keras_macs(model))

    def describe(self, flat, model, macs) -> dict:
        from kcompress import export
        from kcompress.evaluation import gzip_size

        return {
            "size_bytes": len(flat), "gzip_bytes": gzip_size(flat),
            "val_accuracy": _flat_accuracy(flat, self.val_batches()),
            "params": int(model.count_params()), "macs": int(macs),
            "arena_bytes": int(export.estimate_arena(flat).arena_bytes),
        }

    # -- stages
    def distill_stage(self, epochs, restore_best=False, learning_rate=None):
        """The search's distillation settings, as a stage of its own or a stage's ``finetune``."""
        from kcompress.pipeline import Distill

        return Distill(temperature=self.o["temperature"], alpha=self.o["alpha"], epochs=epochs,
                       batch_size=self.o["batch_size"], learning_rate=learning_rate, restore_best=restore_best)

    def run_stages(self, model, stages, first_index):
        """Runs ``stages`` (a recipe slice starting at step ``first_index``) on a copy of ``model``.

        Each stage is seeded as ``Pipeline.run(seed=...)`` seeds it in the recipe (a stage that
        distills takes two steps, ``Stage.steps``), so the recipe replays the search's training.
        """
        from kcompress.pipeline.stages import State

        with self.scope():
            start = copy_model(model)
        state = State(model=start, dataset=self.dataset, teacher=self.teacher, name="compress",
                      strategy=self.strategy, verbose=self.verbose)
        step = first_index
        for stage in stages:
            keras.utils.set_random_seed(self.o["seed"] + step)
            stage.run(state)
            step += stage.steps
        return state

    # -- exploring
    def proposals(self, model):
        """Cuts that each save about step_fraction of the weight bytes: (label, stages, candidate model, saving)."""
        from kcompress import factorization, pruning
        from kcompress.pipeline import LowRank, PruneChannels

        current = estimated_int8_bytes(model)
        target = self.o["step_fraction"] * current
        out = []
        for group in pruning.channel_groups(model):
            if not group.prunable or group.width <= self.o["min_channels"]:
                continue
            one = pruning.prune_channels(model, channels={group.name: group.width - 1})
            per_channel = current - estimated_int8_bytes(one)
            if per_channel <= 0:
                continue
            k = int(math.ceil(target / per_channel))
            k = max(1, min(k, int(math.ceil(group.width * self.o["max_group_cut"])), group.width - self.o["min_channels"]))
            keep = group.width - k
            cand = one if k == 1 else pruning.prune_channels(model, channels={group.name: keep})
            stage = PruneChannels(ratio=None, channels={group.name: keep}, epochs=self.o["step_epochs"],
                                  batch_size=self.o["batch_size"], learning_rate=self.o["learning_rate"],
                                  finetune=self.distill_stage(self.o["step_epochs"]))
            out.append((f"{group.name} {group.width}->{keep}", stage, cand, current - estimated_int8_bytes(cand)))
        if self.o["low_rank"]:
            for layer in model.layers:
                if type(layer) is not keras.layers.Dense or layer.name.endswith("_svd_u"):
                    continue
                m, n = (int(d) for d in layer.kernel.shape)
                if m * n < self.o["low_rank_min_params"]:
                    continue
                r = int((m * n - target) // (m + n))
                if r < 1 or r >= min(m, n) // 2:
                    continue
                cand = factorization.low_rank(model, rank={layer.name: r}).model
                stage = LowRank(rank={layer.name: r}, epochs=self.o["step_epochs"], batch_size=self.o["batch_size"],
                                learning_rate=self.o["learning_rate"], finetune=self.distill_stage(self.o["step_epochs"]))
                out.append((f"{layer.name} rank {r}", stage, cand, current - estimated_int8_bytes(cand)))
        return out, target

    def explore_step(self, model):
        props, target = self.proposals(model)
        if not props:
            return None
        scored = []
        for label, stage, cand, saving in props:
            acc = _accuracy(cand, self.xv_fast, self.yv_fast)
            scored.append((label, stage, saving, acc))
            logging.info("[compress]   proposal %-28s saves %6d B (est.), val accuracy untrained %.4f", label, saving, acc)
        big = [s for s in scored if s[2] >= 0.5 * target]
        best = max(big, key=lambda s: s[3]) if big else max(scored, key=lambda s: s[2])
        return best, scored

    def step_done(self, index):
        return index < len(self.state["steps"])

    def explore(self):
        floor = self.budget.floor(self.state["baseline"]["val_accuracy"])
        while True:
            steps = self.state["steps"]
            last = steps[-1] if steps else self.state["baseline"]["int8"]
            model = self.models[len(steps)]
            fits = self.fits(last)
            if fits and not self.budget.has_accuracy:
                return "size limits met"
            if floor is not None and steps and last["val_accuracy"] < floor - self.o["explore_margin"] and fits:
                return f"validation accuracy {last['val_accuracy']:.4f} fell {self.o['explore_margin']:g} below the floor"
            if len(steps) >= self.o["max_steps"]:
                return f"max_steps={self.o['max_steps']} reached"
            if self.out_of_time():
                return "time or trial limit reached"
            found = self.explore_step(model)
            if found is None:
                return "nothing left to cut"
            (label, stage, saving, untrained), scored = found
            index = len(steps)
            recipe_index = 2 * index
            logging.info("[compress] step %d: %s (saves ~%d B); recovering %d epoch(s)", index + 1, label, saving,
                         self.o["step_epochs"])
            stages = [stage]  # recovered by distillation: its finetune
            state = self.run_stages(model, stages, recipe_index)
            self.trials += 1
            new = state.model
            flat, record = self.measure(new)
            record["min_size_bytes"] = self.smallest_bytes(new)
            record.update({
                "phase": "explore", "variant": f"step{index + 1}", "step": index + 1, "move": label,
                "untrained_val_accuracy": untrained, "widths": _widths(new),
                "keras_val_accuracy": self.keras_val_accuracy(new),
                "stages": [{"stage": s.kind, **s.get_config()} for s in stages],
                "proposals": [{"move": s[0], "saving": int(s[2]), "untrained_val_accuracy": s[3]} for s in scored],
                "seconds": round(time.perf_counter() - self.t0, 1),
            })
            record["meets_budget"] = self.budget.size_ok(record) and (floor is None or record["val_accuracy"] >= floor)
            self.models[index + 1] = new
            record["model_path"] = self.save_model(new, f"step{index + 1:02d}.keras")
            steps.append(record)
            self.save_state()
            logging.info("[compress] step %d: %s -> %d B int8 (PTQ), val accuracy %.4f (Keras %.4f), %d params",
                         index + 1, label, record["size_bytes"], record["val_accuracy"], record["keras_val_accuracy"],
                         record["params"])

    # -- finishing
    def final_stages(self):
        from kcompress.pipeline import QuantizeAware

        stages = [self.distill_stage(self.o["recovery_epochs"], restore_best=True)]
        if self.o["qat_epochs"]:
            stages += [QuantizeAware(epochs=self.o["qat_epochs"], batch_size=self.o["batch_size"],
                                     learning_rate=self.o["qat_learning_rate"],
                                     finetune=self.distill_stage(self.o["qat_epochs"]))]
        return stages

    def recipe_stages(self, step):
        from kcompress.pipeline import stage_from_config

        stages = []
        for record in self.state["steps"][:step]:
            configs = [dict(c) for c in record["stages"]]
            if len(configs) == 2 and configs[1]["stage"] == "distill" and "finetune" not in configs[0]:
                # A step saved before fine-tuning was explicit: [cut, distill that recovered it].
                configs = [{**configs[0], "finetune": configs[1]}]
            stages += [stage_from_config(c) for c in configs]
        return stages

    def meets(self, rec) -> bool:
        floor = self.budget.floor(self.state["baseline"]["val_accuracy"])
        return self.budget.size_ok(rec) and (floor is None or rec["val_accuracy"] >= floor)

    def rank(self, rec):
        """Sort key of a finished export under the current budget (largest is best)."""
        ok = self.meets(rec)
        if self.budget.floor(self.state["baseline"]["val_accuracy"]) is None:  # size limits only: most accurate
            return (ok, rec["val_accuracy"], -rec["size_bytes"])
        return (ok, -rec["size_bytes"] if ok else rec["val_accuracy"], rec["val_accuracy"])

    def rechoose(self, entry):
        """Picks the entry's export for the current budget (finished candidates do not depend on it)."""
        for rec in entry["options"]:
            rec["meets_budget"] = self.meets(rec)
        available = [r for r in entry["options"] if not r["qat"] or entry.get("model_path") or
                     str(entry["step"]) in self.cache]
        best = max(available, key=self.rank)
        entry["record"], entry["chosen"] = best, best["variant"]
        return entry

    def finish(self, step) -> dict:
        key = str(step)
        if key in self.state["finishes"]:
            return self.rechoose(self.state["finishes"][key])
        from kcompress import export
        from kcompress.evaluation import keras_macs

        logging.info("[compress] finishing step %d: %d epochs of distillation%s", step, self.o["recovery_epochs"],
                     f", {self.o['qat_epochs']} of QAT" if self.o["qat_epochs"] else "")
        final = self.final_stages()
        recover, quantize = final[:1], final[1:]
        state = self.run_stages(self.models[step], recover, 2 * step)
        float_model = state.model
        options = []
        # Post-training int8, per-channel and per-tensor scales.
        for per_channel in (True, False):
            flat, rec = self.measure(float_model, per_channel=per_channel)
            options.append((flat, rec, {"qat": False, "per_channel": per_channel}))
        qat_model = None
        if quantize:
            qstate = self.run_stages(float_model, quantize, 2 * step + 1)
            qat_model = qstate.model
            flat = export.to_tflite(qat_model, "int8", verbose=False, slim=True)
            rec = self.describe(flat, float_model, keras_macs(float_model))
            options.append((flat, rec, {"qat": True, "per_channel": True}))
        self.trials += 1
        keras_val = self.keras_val_accuracy(float_model)
        results, flats = [], {}
        for flat, rec, how in options:
            label = "qat_int8" if how["qat"] else f"ptq_int8_{'per_channel' if how['per_channel'] else 'per_tensor'}"
            rec.update({"phase": "finish", "variant": f"step{step}_{label}", "step": step, "export": label,
                        "widths": _widths(float_model), **how, "keras_val_accuracy": keras_val})
            flats[rec["variant"]] = flat
            if self.output_dir:
                rec["flatbuffer_path"] = self.save_flatbuffer(flat, f"step{step:02d}_{label}.tflite")
            results.append(rec)
        entry = {"step": step, "options": results, "seconds": round(time.perf_counter() - self.t0, 1)}
        if self.output_dir:
            entry["float_model_path"] = self.save_model(float_model, f"finish{step:02d}_float.keras")
            if qat_model is not None:
                entry["model_path"] = self.save_model(qat_model, f"finish{step:02d}_qat.h5")
        self.cache[key] = (flats, qat_model, float_model)
        self.rechoose(entry)
        self.state["finishes"][key] = entry
        self.save_state()
        rec = entry["record"]
        logging.info("[compress] step %d finished: %s %d B, val accuracy %.4f (%s)", step, rec["export"],
                     rec["size_bytes"], rec["val_accuracy"], "meets the budget" if rec["meets_budget"] else "misses")
        return entry

    def objects(self, entry):
        """(flatbuffer, model it came from, float model) of the entry's chosen export."""
        from kcompress import export
        from kcompress.export.flatbuffer import check_flatbuffer

        key = str(entry["step"])
        rec = entry["record"]
        if key not in self.cache:
            float_model = self.load_model(entry["float_model_path"])
            qat_model = self.load_model(entry["model_path"]) if entry.get("model_path") else None
            self.cache[key] = ({}, qat_model, float_model)
        flats, qat_model, float_model = self.cache[key]
        if rec["variant"] not in flats:
            path = rec.get("flatbuffer_path")
            if path and os.path.isfile(self.path(path)):
                with open(self.path(path), "rb") as f:
                    flats[rec["variant"]] = check_flatbuffer(f.read())
            elif rec["qat"]:
                flats[rec["variant"]] = export.to_tflite(qat_model, "int8", verbose=False, slim=True)
            else:  # post-training export of the saved float model: deterministic, same calibration draw
                flats[rec["variant"]] = self.measure(float_model, per_channel=rec["per_channel"])[0]
        model = qat_model if rec["qat"] else float_model
        return flats[rec["variant"]], model, float_model

    def choose(self):
        """Finishes candidates along the trajectory until the smallest one that meets the budget is found.

        With only size limits, the largest trajectory model that fits is finished. With an accuracy
        floor the search is guided by the gain finishing brings (:func:`_next_finish`): each finished
        candidate's validation accuracy over its exploration accuracy predicts the others', and the
        next one finished is the smallest predicted to keep the floor.
        """
        steps = self.state["steps"]
        records = [self.state["baseline"]["int8"]] + steps
        floor = self.budget.floor(self.state["baseline"]["val_accuracy"])
        fitting = [j for j, r in enumerate(records) if self.fits(r)]
        if not fitting:
            # The size limit was not reached by the trajectory (PTQ bytes); the smallest step may still fit
            # once finished (per-tensor scales are smaller).
            fitting = [len(records) - 1]
        lo = fitting[0]
        if floor is None:
            return [self.finish(lo)]
        hi = len(records) - 1
        while hi > lo and records[hi]["val_accuracy"] < floor - self.o["explore_margin"]:
            hi -= 1
        done = []
        while True:
            finished = {int(k): (e["record"]["val_accuracy"], e["record"]["meets_budget"])
                        for k, e in self.state["finishes"].items() if lo <= int(k) <= hi}
            if self.out_of_time() and any(ok for _, ok in finished.values()):
                break
            if len(finished) >= self.o["max_finishes"]:
                logging.info("[compress] %d candidates finished (max_finishes); choosing among them",
                             self.o["max_finishes"])
                break
            j = _next_finish([r["val_accuracy"] for r in records], finished, lo, hi, floor,
                             prior_gain=0.4 * self.o["explore_margin"], tolerance=0.15 * self.o["explore_margin"])
            if j is None:
                break
            done.append(self.finish(j))
        return done or [self.finish(k) for k in sorted(self.state["finishes"], key=int) if lo <= int(k) <= hi]


def _next_finish(accuracies, finished, lo, hi, floor, prior_gain, tolerance):
    """The next trajectory index to finish, or None when no smaller candidate is expected to keep ``floor``.

    Args:
        accuracies: validation accuracy of every trajectory model as explored (index 0: the original).
        finished: ``{index: (finished validation accuracy, meets the budget)}`` of the candidates done.
        lo, hi: the indices that may be finished (size limits met, accuracy not hopeless).
        floor: the validation accuracy a winner needs.
        prior_gain: the accuracy finishing is expected to add before any candidate is finished.
        tolerance: candidates predicted up to this far below the floor are still tried.

    The gain of finishing (finished minus explored accuracy, averaged over the finished
    candidates) predicts each unfinished candidate's accuracy. Among those smaller than the
    smallest passing one, predicted within ``tolerance`` of the floor and not dominated by a
    failure (a finished candidate at least as large and at least as accurate that missed),
    the smallest is next. With no passing candidate and none predicted to pass, the most
    accurate undominated one is tried, so a budget that can be met is not given up early.
    """
    gains = [acc - accuracies[j] for j, (acc, _) in finished.items()]
    gain = sum(gains) / len(gains) if gains else prior_gain
    passing = [j for j, (_, ok) in finished.items() if ok]
    best = max(passing) if passing else None
    failures = [j for j, (_, ok) in finished.items() if not ok]

    def open_(j):
        dominated = any(k <= j and accuracies[k] >= accuracies[j] for k in failures)
        return j not in finished and not dominated and (best is None or j > best)

    cands = [j for j in range(lo, hi + 1) if open_(j)]
    likely = [j for j in cands if accuracies[j] + gain >= floor - tolerance]
    if likely:
        return max(likely)
    if best is None and cands:
        return max(cands, key=lambda j: (accuracies[j], j))
    return None


def compress(model, dataset: Dataset, max_bytes: int | None = None, max_accuracy_drop: float | None = None,
             min_accuracy: float | None = None, max_macs: int | None = None, max_arena_bytes: int | None = None,
             recovery_epochs: int = 12, step_epochs: int = 1, qat_epochs: int = 2, output_dir: str | None = None,
             seed: int = 0, teacher=None, max_trials: int | None = None, time_limit: float | None = None,
             step_fraction: float = 0.25, temperature: float = 2.0, alpha: float = 0.5, batch_size: int = 128,
             learning_rate: float = 1e-3, qat_learning_rate: float = 1e-4, low_rank: bool = True,
             min_channels: int = 2, max_steps: int = 40, explore_margin: float = 0.01,
             calibration_samples: int = 500, strategy=None, verbose: int | None = None) -> CompressionResult:
    """Finds the smallest int8 flatbuffer of ``model`` that meets a budget, recovered by distillation.

    Channel groups are cut and large Dense layers factorized step by step (each step the
    proposal that loses the least validation accuracy for its bytes), every step recovered
    by distillation from the original model; candidates along the way are fully recovered,
    quantization-aware trained and exported as slim int8 flatbuffers, and measured in
    LiteRT on the validation split. See the module docstring for the method.

    Args:
        model: a trained Sequential or Functional tf_keras model with logits out (a Keras 3
            model is converted); it is not changed.
        dataset: a :class:`kcompress.data.Dataset`; the last 10% of the training split
            decides, the test split only reports the winner. A streaming dataset
            (:class:`kcompress.data.StreamingDataset`) is read batch by batch; only the first
            3,000 validation images (proposal scoring) and the calibration samples are held.
        max_bytes: the flatbuffer must be at most this many bytes.
        max_accuracy_drop: validation accuracy may fall at most this fraction below the
            original model's (0.002 = 0.2 points).
        min_accuracy: validation accuracy (a fraction) the flatbuffer must reach.
        max_macs: at most this many multiply-accumulates per inference.
        max_arena_bytes: at most this TFLite Micro tensor arena (estimated).
        recovery_epochs: distillation epochs of each finished candidate.
        step_epochs: distillation epochs after each exploration step.
        qat_epochs: quantization-aware training epochs (0: post-training quantization only).
        output_dir: where progress, models and flatbuffers go; a run with the same
            arguments resumes from it. Under ``MultiWorkerMirroredStrategy`` only the chief
            writes it, and every worker reads it to resume (shared storage).
        seed: seeds every training stage (stage ``i`` of the recipe uses ``seed + i``).
        teacher: the distillation teacher (default: ``model``).
        max_trials: stop after this many trainings (exploration steps and finishes).
        time_limit: stop exploring / finishing after this many seconds.
        step_fraction: fraction of the weight bytes each step removes, in (0, 0.9].
        temperature, alpha: distillation temperature and hard-label weight.
        batch_size, learning_rate: recovery training settings; ``qat_learning_rate`` for QAT.
        low_rank: also propose low-rank splits of Dense layers.
        min_channels: a group keeps at least this many channels.
        max_steps: at most this many exploration steps.
        explore_margin: exploration stops when a step's validation accuracy is this far
            below the floor (finishing recovers more).
        calibration_samples: representative training images for int8 calibration.
        strategy: a ``tf.distribute`` strategy to train under, e.g.
            ``kcompress.models.get_strategy("multiworker")``: every worker calls ``compress``
            with the same arguments (``model`` built in ``strategy.scope()``) and gets the same
            result; a ``time_limit`` is agreed between the workers.
        verbose: Keras verbosity for the trainings (None: progress bars on a terminal).

    Returns:
        A :class:`CompressionResult`.

    Raises:
        TypeError / ValueError: bad arguments (named, with what is allowed), or workers of a
            multi-worker strategy that start from different states (one resumes, one not; one
            cannot read or write its ``output_dir``; ``time_limit`` or ``max_trials`` set on
            one only): raised on every worker before anything trains.
        BudgetError: the budget cannot be met; the message gives the smallest size reached
            and its accuracy, ``records`` every candidate.

    Example:
        >>> res = kc.compress(model, ds, max_accuracy_drop=0.002, output_dir="runs/c")
        >>> len(res.flatbuffer), res.winner["test_accuracy"], res.recipe
    """
    from kcompress.pruning.prune import _check_graph_model

    model = check_model(model)
    _check_graph_model(model)
    if not isinstance(dataset, Dataset):
        raise TypeError(f"dataset must be a kcompress.data.Dataset, got {type(dataset).__name__}.")
    budget = Budget(max_bytes=max_bytes, max_accuracy_drop=max_accuracy_drop, min_accuracy=min_accuracy,
                    max_macs=max_macs, max_arena_bytes=max_arena_bytes)
    teacher = model if teacher is None else check_model(teacher, "teacher")
    opts = {
        "recovery_epochs": check_int("recovery_epochs", recovery_epochs, 1),
        "step_epochs": check_int("step_epochs", step_epochs, 1),
        "qat_epochs": check_int("qat_epochs", qat_epochs, 0),
        "seed": check_int("seed", seed, 0),
        "max_trials": check_int("max_trials", max_trials, 1, allow_none=True),
        "time_limit": check_number("time_limit", time_limit, 0, low_open=True, allow_none=True),
        "step_fraction": check_number("step_fraction", step_fraction, 0, 0.9, low_open=True),
        "temperature": check_temperature(temperature),
        "alpha": check_fraction("alpha", alpha),
        "batch_size": check_int("batch_size", batch_size, 1),
        "learning_rate": check_number("learning_rate", learning_rate, 0, low_open=True),
        "qat_learning_rate": check_number("qat_learning_rate", qat_learning_rate, 0, low_open=True),
        "low_rank": check_bool("low_rank", low_rank), "low_rank_min_params": 4096,
        "min_channels": check_int("min_channels", min_channels, 1),
        "max_steps": check_int("max_steps", max_steps, 1),
        "explore_margin": check_fraction("explore_margin", explore_margin),
        "calibration_samples": check_int("calibration_samples", calibration_samples, 1),
        "proposal_samples": 3000, "max_group_cut": 0.5, "max_finishes": 5,
    }
    if strategy is not None and not isinstance(strategy, tf.distribute.Strategy):
        raise TypeError(f"strategy must be None or a tf.distribute.Strategy, got {type(strategy).__name__}.")
    if output_dir is not None:
        if not isinstance(output_dir, (str, os.PathLike)) or not os.fspath(output_dir):
            raise TypeError(f"output_dir must be a folder path or None, got {output_dir!r}.")
        output_dir = os.fspath(output_dir)
    if dataset.num_train < 20 or dataset.num_test < 1:
        raise ValueError(f"dataset {dataset.name!r} is too small to compress: {dataset.num_train} training and "
                         f"{dataset.num_test} test images (need >= 20 and >= 1).")

    search = _Search(model, dataset, budget, teacher, output_dir, opts, strategy, verbose)
    # The search does not depend on the budget (only where it stops and which export it picks), so a
    # run with another budget resumes the same trajectory and finished candidates.
    config = {k: v for k, v in opts.items() if k not in ("max_trials", "time_limit", "max_finishes")}
    fingerprint = _fingerprint(model, dataset, config)
    # What one worker meets alone (an unwritable or foreign output_dir) fails every worker below:
    # a worker that raised here would leave the others waiting on their first all-reduce.
    resumed, error = False, None
    try:
        if search.writes:  # the other workers only read it
            _check_writable(output_dir)
        resumed = _resume(search, model, fingerprint)
    except (OSError, ValueError) as err:
        error = err
    search.state["fingerprint"] = fingerprint
    search.models[0] = model
    # Every worker must take the same decisions; a barrier, too, before the chief writes anything.
    search.workers.check_same({
        "fingerprint": int(fingerprint[:6], 16), "failed": int(error is not None), "resumed": int(resumed),
        "steps": len(search.state["steps"]), "finishes": len(search.state["finishes"]),
        "time_limit": int(opts["time_limit"] is not None),  # only then does each check all-reduce
        "max_trials": -1 if opts["max_trials"] is None else opts["max_trials"],
    }, "the workers of the MultiWorkerMirroredStrategy start compress from different states ({differ} differ; "
       "{workers}). Every worker must run the same model, dataset and settings, and read the same output_dir "
       f"({output_dir!r}) on shared storage to resume, or none to start afresh.", cause=error)
    if error is not None:
        raise error

    if not resumed:
        from kcompress import export
        from kcompress.evaluation import keras_macs

        base_val = search.keras_val_accuracy(model)
        flat32 = export.to_tflite(model, "float32")
        flat8, rec8 = search.measure(model)
        rec8.update({"phase": "baseline", "variant": "baseline_int8", "step": 0, "widths": _widths(model),
                     "keras_val_accuracy": base_val, "min_size_bytes": search.smallest_bytes(model)})
        search.state["baseline"] = {
            "val_accuracy": base_val, "float32_bytes": len(flat32), "params": int(model.count_params()),
            "macs": int(keras_macs(model)), "int8": rec8,
            "test_accuracy": _flat_accuracy(flat32, dataset.test_batches(1024)),
        }
        search.save_state()
    _check_reachable(search, model, budget)
    floor = budget.floor(search.state["baseline"]["val_accuracy"])
    logging.info("[compress] %s: baseline val accuracy %.4f, int8 %d B; budget %s%s", model.name,
                 search.state["baseline"]["val_accuracy"], search.state["baseline"]["int8"]["size_bytes"],
                 budget.describe(), f" (accuracy floor {floor:.4f})" if floor is not None else "")

    search.state["stopped"] = search.explore()
    search.save_state()
    logging.info("[compress] exploration stopped: %s", search.state["stopped"])
    finished = search.choose()
    for entry in search.state["finishes"].values():
        search.rechoose(entry)
    records = [search.state["baseline"]["int8"]] + list(search.state["steps"])
    for entry in search.state["finishes"].values():
        records += entry["options"]
    passing = [e for e in finished if e["record"]["meets_budget"]]
    if not passing:
        passing = [e for e in search.state["finishes"].values() if e["record"]["meets_budget"]]
    if not passing:
        smallest = min((e["record"] for e in search.state["finishes"].values()), key=lambda r: r["size_bytes"],
                       default=None)
        best = max((e["record"] for e in search.state["finishes"].values()), key=lambda r: r["val_accuracy"],
                   default=None)
        where = f" with the accuracy floor {floor:.4f}" if floor is not None else ""
        msg = [f"the budget ({budget.describe()}) cannot be met from {model.name!r}{where}."]
        if smallest is not None:
            msg.append(f"Smallest finished flatbuffer: {smallest['size_bytes']:,} bytes at {smallest['val_accuracy']:.4f} "
                       f"validation accuracy; most accurate: {best['size_bytes']:,} bytes at {best['val_accuracy']:.4f}.")
        msg.append(f"Exploration stopped because: {search.state['stopped']}. Loosen the budget, give more "
                   "recovery_epochs, or start from a smaller model.")
        raise BudgetError(" ".join(msg), records=records, best=smallest)
    win_entry = min(passing, key=lambda e: (e["record"]["size_bytes"], -e["record"]["val_accuracy"]))
    flat, final_model, float_model = search.objects(win_entry)
    winner = dict(win_entry["record"])
    winner["phase"] = "winner"
    winner["variant"] = "winner"
    winner["test_accuracy"] = _flat_accuracy(flat, dataset.test_batches(1024))
    winner["size_ratio"] = search.state["baseline"]["float32_bytes"] / winner["size_bytes"]
    records.append(winner)
    recipe = _recipe(search, win_entry)
    result = CompressionResult(flatbuffer=flat, model=final_model, float_model=float_model, records=records,
                               recipe=recipe, winner=winner, baseline=search.state["baseline"], budget=budget)
    if search.writes:
        from kcompress.compression.report import write_outputs

        result.plot_path = write_outputs(result, output_dir)
    logging.info("[compress] winner: %s, %d B (%.1fx smaller than float32), val %.4f, test %.4f", winner["export"],
                 winner["size_bytes"], winner["size_ratio"], winner["val_accuracy"], winner["test_accuracy"])
    return result


def _check_writable(output_dir):
    if output_dir is None:
        return
    try:
        os.makedirs(output_dir, exist_ok=True)
        probe = os.path.join(output_dir, ".kcompress-write-test")
        with open(probe, "w") as f:
            f.write("ok")
        os.unlink(probe)
    except OSError as err:
        raise ValueError(f"output_dir {output_dir!r} is not a writable folder ({err.strerror}); "
                         "pass a folder you can write to.") from err


def _resume(search, model, fingerprint) -> bool:
    """Loads the state and models of a run in ``search.output_dir``; whether there was one.

    Raises:
        ValueError: the folder holds a run of another model, dataset or settings.
    """
    if not search.output_dir or not os.path.exists(search.path(_STATE)):
        return False
    with open(search.path(_STATE), encoding="utf-8") as f:
        old = json.load(f)
    if old.get("fingerprint") != fingerprint or old.get("version") != _VERSION:
        raise ValueError(
            f"output_dir {search.output_dir!r} holds a compress run with another model, dataset or settings "
            f"(fingerprint {old.get('fingerprint')} != {fingerprint}; a budget may change, nothing else); use a "
            f"new output_dir or delete {search.path(_STATE)} to start over."
        )
    old["finishes"] = dict(old.get("finishes", {}))
    for entry in old["finishes"].values():
        legacy = entry.pop("flatbuffer_path", None)  # one file per finish, before every export was kept
        for rec in entry["options"]:
            if legacy and rec["variant"] == entry.get("chosen"):
                rec.setdefault("flatbuffer_path", legacy)
    models = {0: model}
    for record in old["steps"]:
        models[record["step"]] = search.load_model(record["model_path"])
    search.state, search.models = old, models  # only once all of it was read
    for record in old["steps"]:
        record["meets_budget"] = search.meets(record)
        if "min_size_bytes" not in record:  # searches written before it was measured
            record["min_size_bytes"] = search.smallest_bytes(models[record["step"]])
    base = old["baseline"]["int8"]
    if "min_size_bytes" not in base:
        base["min_size_bytes"] = search.smallest_bytes(model)
    logging.info("[compress] resuming from %s: %d steps, %d finished candidates", search.output_dir,
                 len(old["steps"]), len(old["finishes"]))
    return True


def _recipe(search, entry):
    from kcompress.pipeline import Evaluate, Export, Pipeline

    step = entry["step"]
    rec = entry["record"]
    stages = search.recipe_stages(step)
    final = search.final_stages()
    stages += final if rec["qat"] else final[:1]
    stages += [Export("int8", slim=True, per_channel=rec["per_channel"],
                      calibration_samples=search.o["calibration_samples"]), Evaluate()]
    return Pipeline(stages, name="compressed")


def _check_reachable(search, model, budget):
    """Fails fast when even the smallest model channel cuts can reach is over the size limits."""
    if not budget.has_size:
        return
    from kcompress import pruning

    groups = [g for g in pruning.channel_groups(model) if g.prunable and g.width > search.o["min_channels"]]
    smallest = pruning.prune_channels(model, channels={g.name: search.o["min_channels"] for g in groups}) if groups else model
    flat, record = search.measure(smallest, per_channel=False)
    if budget.size_ok(record):
        return
    what = ", ".join(f"{k}={v:,}" for k, v in (("size_bytes", record["size_bytes"]), ("macs", record["macs"]),
                                               ("arena_bytes", record["arena_bytes"])))
    raise BudgetError(
        f"the budget ({budget.describe()}) cannot be met from {model.name!r}: cutting every channel group to "
        f"{search.o['min_channels']} channels gives an int8 flatbuffer with {what}, still over the limit "
        f"(its untrained validation accuracy is {record['val_accuracy']:.4f}). Raise the limit, lower min_channels, "
        "or start from a smaller architecture.",
        records=[record], best=record,
    )
