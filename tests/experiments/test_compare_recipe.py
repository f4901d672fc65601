"""compare.py's compressed_budget row: which kc.compress recipe it replays (no training)."""

import json

import pytest
from experiment_scripts import EXPERIMENTS, load

SCRIPT = EXPERIMENTS / "compare.py"


@pytest.fixture(scope="module")
def compare():
    return load("compare", "compare_recipe_experiment")


def test_auto_takes_the_committed_recipe_of_the_model_and_dataset(compare):
    pipeline, meta = compare._compress_recipe({"compress_recipe": "auto", "model": "lenet5", "dataset": "mnist"})
    committed = json.loads((SCRIPT.parent / "recipes" / "lenet5_mnist.json").read_text())
    assert pipeline.get_config() == committed["recipe"]
    assert meta["path"].endswith("lenet5_mnist.json") and meta["budget"] == committed["budget"]
    kinds = [s["stage"] for s in pipeline.get_config()["stages"]]
    assert kinds[-2:] == ["export", "evaluate"] and "prune_channels" in kinds


def test_auto_without_a_recipe_leaves_the_row_out_and_bad_paths_are_refused(compare, tmp_path):
    assert compare._compress_recipe({"compress_recipe": "auto", "model": "lenet300_100", "dataset": "mnist"}) is None
    assert compare._compress_recipe({"compress_recipe": "", "model": "lenet5", "dataset": "mnist"}) is None
    with pytest.raises(ValueError, match="--compress_recipe names 'nope.json', which is not a file"):
        compare._compress_recipe({"compress_recipe": "nope.json", "model": "lenet5", "dataset": "mnist"})
    # A recipe of another model is left out, one of another dataset replayed as it is.
    src = json.loads((SCRIPT.parent / "recipes" / "lenet5_mnist.json").read_text())
    path = tmp_path / "r.json"
    path.write_text(json.dumps(src))
    assert compare._compress_recipe({"compress_recipe": str(path), "model": "lenet300_100", "dataset": "mnist"}) is None
    found = compare._compress_recipe({"compress_recipe": str(path), "model": "lenet5", "dataset": "fashion_mnist"})
    assert found is not None and found[1]["dataset"] == "mnist"
