"""The study runner: spread over seeds, resume, selection, machine info (no training), and Study.run (slow)."""

import json

import pytest

import kcompress as kc
from kcompress.reporting import study


def _records():
    return [{"variant": "a", "flatbuffer": "int8", "accuracy": 0.98, "size_bytes": 100, "note": "x", "seed": 0},
            {"variant": "a", "flatbuffer": "int8", "accuracy": 0.99, "size_bytes": 100, "note": "x", "seed": 1},
            {"variant": "b", "flatbuffer": "int8", "accuracy": 0.97, "size_bytes": 50, "note": "y", "seed": 0},
            {"variant": "b", "flatbuffer": "int8", "accuracy": 0.95, "size_bytes": 60, "note": "z", "seed": 1}]


def test_summarize_gives_mean_std_and_n_and_the_table_shows_them():
    rows = study.summarize(_records(), by=("variant", "flatbuffer"))
    a, b = rows
    assert (a["variant"], a["n"], a["seeds"]) == ("a", 2, [0, 1])
    assert a["accuracy"] == pytest.approx(0.985) and a["accuracy_std"] == pytest.approx(0.00707107)
    assert a["size_bytes"] == 100 and isinstance(a["size_bytes"], int) and a["note"] == "x"
    assert b["size_bytes"] == 55.0 and b["note"] is None
    table = kc.reporting.to_markdown(rows, ("variant", "accuracy", "size_bytes"))
    assert "| a | 98.50 ± 0.71 | 100 |" in table  # a value every seed agrees on has no ±
    assert "| b | 96.00 ± 1.41 | 55 ± 7.07 |" in table
    one = study.summarize(_records()[:1])
    assert one[0]["n"] == 1 and "±" not in kc.reporting.to_markdown(one, ("variant", "accuracy"))
    assert study.spread_note([0]) == "One seed (0), n=1: each number is that run's value."
    assert "over seeds 0, 1 (n=2)" in study.spread_note([0, 1])


def test_run_seeds_resumes_finished_seeds(tmp_path):
    calls = []

    def one(seed, folder):
        calls.append(seed)
        return [{"variant": "v", "accuracy": 0.5 + seed / 10}]

    done = study.run_seeds(one, [0, 1], str(tmp_path), {"epochs": 1})
    assert calls == [0, 1] and done[1] == [{"variant": "v", "accuracy": 0.6, "seed": 1}]
    assert (tmp_path / "seed0" / "records.json").is_file()
    study.run_seeds(one, [0, 1, 2], str(tmp_path), {"epochs": 1})
    assert calls == [0, 1, 2]  # seeds 0 and 1 re-used
    (tmp_path / "seed1" / "records.json").write_text('{"fingerprint": "x", "rec')  # cut short
    study.run_seeds(one, [0, 1], str(tmp_path), {"epochs": 1})
    assert calls == [0, 1, 2, 1]
    study.run_seeds(one, [0], str(tmp_path), {"epochs": 2})  # other settings: runs again
    assert calls == [0, 1, 2, 1, 0]


def test_write_outputs_writes_every_file_with_the_machine(tmp_path):
    summary = study.write_outputs(str(tmp_path), _records(), {"epochs": 1}, title="T", notes="Some notes.",
                                  columns=("variant", "accuracy"), by=("variant", "flatbuffer"),
                                  pareto=dict(label="variant"))
    assert [r["variant"] for r in summary] == ["a", "b"]
    payload = json.loads((tmp_path / "results.json").read_text())
    assert len(payload["records"]) == 4 and payload["summary"][0]["n"] == 2
    machine = json.loads((tmp_path / "flags.json").read_text())["machine"]
    assert machine["cores"] >= 1 and machine["cpu"] and machine["versions"]["tensorflow"] == kc.tf.__version__
    report = (tmp_path / "report.md").read_text()
    assert report.startswith("# T\n") and " ± " in report and "Some notes." in report
    assert (tmp_path / "results.csv").read_text().splitlines()[0].startswith("variant,flatbuffer,accuracy")
    assert (tmp_path / "pareto.png").stat().st_size > 0


def test_select_on_validation_and_seed_parsing():
    assert study.select_on_validation({0.1: {"val_accuracy": 0.9}, 0.5: {"val_accuracy": 0.9}}) == 0.1  # ties: first
    assert study.select_on_validation({"x": {"val_accuracy": 0.1}, "y": {"val_accuracy": 0.2}}) == "y"
    with pytest.raises(ValueError, match="candidates must hold at least one record"):
        study.select_on_validation({})
    assert study.parse_seeds(["0", "1"]) == [0, 1] and study.parse_seeds("3") == [3]
    for bad in ([], ["-1"], ["a"], ["1", "1"]):
        with pytest.raises(ValueError, match="seeds must be"):
            study.parse_seeds(bad)


@pytest.mark.slow  # trains and exports small models through Study.run (seconds)
def test_an_entry_continues_from_an_earlier_entry_and_resumes(tmp_path, mnist):
    from kcompress.pipeline import Evaluate, Export, Pipeline, Prune, Train

    ds = mnist.take(train=600, test=200)
    baseline = study.Entry("baseline", "model", Pipeline([Train(1, 128)], name="baseline"))

    def entries(sparsity):
        return [study.Entry("pruned", "baseline", Pipeline([Prune(sparsity, epochs=1, batch_size=128)], name="pruned")),
                study.Entry("then_int8", "pruned", Pipeline([Export("int8"), Evaluate(latency_runs=1)], name="then_int8"))]

    def build(start, seed):
        return kc.models.get("mlp_tiny", ds.input_shape, ds.num_classes, seed=seed)

    runs = study.Study(entries(0.7), build, settings={"s": 1}, baseline=baseline).run(ds, str(tmp_path), [0])[0]
    # then_int8 trained nothing: it exported the pruned entry's final model, zeros included.
    def zeros(run):
        (rec,) = run["then_int8"]["records"]
        return 1 - rec["nonzero_params"] / rec["params"]  # of the int8 flatbuffer's weights, biases included

    assert runs["pruned"]["log"][0]["sparsity"] == pytest.approx(0.7, abs=0.01)
    assert 0.6 < zeros(runs) < 0.7 and runs["then_int8"]["start"] == "pruned"
    assert [s["stage"] for s in runs["then_int8"]["log"]] == ["Export", "Evaluate"]
    assert (tmp_path / "seed0" / "variants" / "pruned.keras").is_file()
    assert not (tmp_path / "seed0" / "variants" / "then_int8.keras").exists()  # nothing starts from it
    # Resumed: nothing runs again. Another start entry (a new fingerprint) runs what follows it again.
    again = study.Study(entries(0.7), build, settings={"s": 1}, baseline=baseline).run(ds, str(tmp_path), [0])[0]
    assert again["then_int8"]["seconds"] == runs["then_int8"]["seconds"]
    other = study.Study(entries(0.5), build, settings={"s": 1}, baseline=baseline).run(ds, str(tmp_path), [0])[0]
    assert 0.4 < zeros(other) < 0.5
    with pytest.raises(ValueError, match="'then_int8' starts from 'later', which is not an earlier entry"):
        study.Study([study.Entry("then_int8", "later", Pipeline([Export("int8")])),
                     study.Entry("later", "baseline", Pipeline([Export("int8")]))], build, {}, baseline=baseline)


@pytest.mark.slow  # trains and exports small models through Study.run (seconds)
def test_a_worker_writing_elsewhere_resumes_from_the_shared_folder(tmp_path, mnist, monkeypatch):
    # A non-chief worker writes into its own temporary folder but must skip what the chief finished.
    from kcompress.pipeline import Export, Pipeline, Prune, Train

    ds = mnist.take(train=400, test=100)
    baseline = study.Entry("baseline", "model", Pipeline([Train(1, 128)], name="baseline"))
    entries = [study.Entry("pruned", "baseline", Pipeline([Prune(0.5, epochs=1, batch_size=128)], name="pruned")),
               study.Entry("then", "pruned", Pipeline([Export("int8")], name="then"))]

    def build(start, seed):
        return kc.models.get("mlp_tiny", ds.input_shape, ds.num_classes, seed=seed)

    chief = study.Study(entries, build, {"s": 1}, baseline=baseline).run(ds, str(tmp_path / "shared"), [0])[0]
    ran = []
    original = Pipeline.run
    monkeypatch.setattr(Pipeline, "run", lambda self, *a, **k: ran.append(self.name) or original(self, *a, **k))
    worker = study.Study(entries, build, {"s": 1}, baseline=baseline).run(
        ds, str(tmp_path / "tmp"), [0], resume_dir=str(tmp_path / "shared"))[0]
    assert ran == [] and worker["then"]["fingerprint"] == chief["then"]["fingerprint"]
    (tmp_path / "shared" / "seed0" / "variants" / "pruned.keras").unlink()  # what a later entry needs is gone
    study.Study(entries, build, {"s": 1}, baseline=baseline).run(ds, str(tmp_path / "tmp"), [0],
                                                                  resume_dir=str(tmp_path / "shared"))
    assert ran == ["pruned"] and (tmp_path / "tmp" / "seed0" / "variants" / "pruned.keras").is_file()
