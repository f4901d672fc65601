"""kcompress.validation: one rule per argument (TypeError for the wrong type, ValueError for the wrong value)."""

import math

import numpy as np
import pytest

import kcompress as kc
from kcompress import validation as v


@pytest.mark.parametrize("value, kwargs, error, message", [
    (True, {"minimum": 1}, TypeError, "epochs must be an int >= 1, got True"),
    (2.0, {"minimum": 1}, TypeError, "epochs must be an int >= 1, got 2.0"),
    ("3", {}, TypeError, "epochs must be an int, got '3'"),
    (0, {"minimum": 1}, ValueError, "epochs must be an int >= 1, got 0"),
    (11, {"minimum": 1, "maximum": 10}, ValueError, r"epochs must be an int in \[1, 10\], got 11"),
    (None, {"minimum": 1}, TypeError, "epochs must be an int >= 1, got None"),
])
def test_check_int_refuses(value, kwargs, error, message):
    with pytest.raises(error, match=message):
        v.check_int("epochs", value, **kwargs)


def test_check_int_accepts_and_normalises():
    assert v.check_int("n", np.int64(3), minimum=1) == 3 and type(v.check_int("n", np.int64(3))) is int
    assert v.check_int("n", None, allow_none=True) is None
    assert v.check_int("n", 10, minimum=1, maximum=10) == 10


@pytest.mark.parametrize("value, kwargs, error, message", [
    ("0.1", {}, TypeError, "rate must be a finite number, got '0.1'"),
    (False, {}, TypeError, "rate must be a finite number, got False"),
    (math.nan, {}, ValueError, "rate must be a finite number, got nan"),
    (math.inf, {"minimum": 0}, ValueError, "rate must be a finite number >= 0, got inf"),
    (0.0, {"minimum": 0, "low_open": True}, ValueError, "rate must be a finite number > 0, got 0.0"),
    (1.0, {"minimum": 0, "maximum": 1, "high_open": True}, ValueError, r"rate must be a finite number in \[0, 1\), got 1.0"),
    (-1, {"maximum": -2}, ValueError, "rate must be a finite number <= -2, got -1"),
])
def test_check_number_refuses(value, kwargs, error, message):
    with pytest.raises(error, match=message):
        v.check_number("rate", value, **kwargs)


def test_check_number_fraction_temperature_bool_choice():
    assert v.check_number("x", np.float32(0.5), 0, 1) == 0.5 and type(v.check_number("x", 1)) is float
    assert v.check_fraction("alpha", 1) == 1.0 and v.check_fraction("drop", None, allow_none=True) is None
    with pytest.raises(ValueError, match=r"alpha must be a finite number in \[0, 1\], got 1.5"):
        v.check_fraction("alpha", 1.5)
    assert v.check_temperature(4) == 4.0
    for bad, error in ((0, ValueError), (-1.0, ValueError), (math.inf, ValueError), ("4", TypeError)):
        with pytest.raises(error, match="temperature must be a finite number > 0"):
            v.check_temperature(bad)
    assert v.check_bool("slim", np.bool_(True)) is True
    with pytest.raises(TypeError, match="slim must be True or False, got 1"):
        v.check_bool("slim", 1)
    assert v.check_choice("mode", "int8", ("int8", "float16")) == "int8"
    with pytest.raises(ValueError, match="mode must be one of 'int8', 'float16', got 'int4'"):
        v.check_choice("mode", "int4", ("int8", "float16"))
    with pytest.raises(TypeError, match="mode must be one of 'int8', 'float16', got 8"):
        v.check_choice("mode", 8, ("int8", "float16"))
    assert v.check_instance("x", 3, int, "an int") == 3 and v.check_instance("x", None, int, "", allow_none=True) is None
    with pytest.raises(TypeError, match="finetune must be None or a Distill stage, got 'distill'"):
        v.check_instance("finetune", "distill", kc.pipeline.Distill, "None or a Distill stage", allow_none=True)


def test_the_same_quantity_has_the_same_rule_in_the_distiller_the_loss_and_compress(mnist_small):
    teacher = kc.models.get("lenet5")  # arguments are checked before any training
    d = kc.distillation.Distiller(student=kc.models.get("lenet5_student"), teacher=teacher)
    for call in (lambda t: d.compile(temperature=t),
                 lambda t: kc.distillation.soft_target_loss([[1.0, 0.0]], [[0.0, 0.0]], t),
                 lambda t: kc.compress(teacher, mnist_small, max_bytes=10_000, temperature=t),
                 lambda t: kc.pipeline.Distill(temperature=t)):
        with pytest.raises(ValueError, match="temperature must be a finite number > 0, got 0"):
            call(0)
        with pytest.raises(TypeError, match="temperature must be a finite number > 0, got 'hot'"):
            call("hot")


def test_resolve_layers_names_classes_and_errors():
    model = kc.models.get("lenet5")
    dense = kc.keras.layers.Dense
    chosen, explicit = v.resolve_layers(model, None, accept=lambda layer: isinstance(layer, dense))
    assert [layer.name for layer in chosen] == ["fc1", "fc2", "logits"] and not explicit
    chosen, explicit = v.resolve_layers(model, "fc1")
    assert [layer.name for layer in chosen] == ["fc1"] and explicit
    chosen, _ = v.resolve_layers(model, [kc.keras.layers.Conv2D, "fc2"])
    assert [layer.name for layer in chosen] == ["conv1", "conv2", "fc2"]  # model order
    with pytest.raises(ValueError, match=r"layers names 'fc9', which is not a layer of the model; its layers are \["):
        v.resolve_layers(model, ["fc9"])
    with pytest.raises(ValueError, match="layers names 'pool1', a MaxPooling2D; this takes Dense layers only"):
        v.resolve_layers(model, "pool1", accept=lambda layer: isinstance(layer, dense), what="Dense layers")
    with pytest.raises(ValueError, match="layers names the class BatchNormalization, but the model has no such layer"):
        v.resolve_layers(model, kc.keras.layers.BatchNormalization)
    with pytest.raises(TypeError, match="layers must hold layer names .* or layer classes, got 3"):
        v.resolve_layers(model, [3])
    with pytest.raises(ValueError, match=r"layers names 'pool1', a MaxPooling2D; this takes Dense layers only "
                                         r"\(here: \['fc1', 'fc2', 'logits'\]\)"):
        v.resolve_layers(model, ["pool1"], accept=lambda layer: isinstance(layer, dense), what="Dense layers")


def test_resolve_layers_takes_the_models_own_layers_nested_models_and_refuses_the_rest():
    model = kc.models.get("lenet5")
    chosen, _ = v.resolve_layers(model, [model.get_layer("fc2"), "fc1", model.get_layer("fc2")])
    assert [layer.name for layer in chosen] == ["fc1", "fc2"]  # model order, each once
    assert v.resolve_layers(model, model.get_layer("conv1"))[0] == [model.get_layer("conv1")]  # one layer object
    other = kc.models.get("lenet5")
    with pytest.raises(ValueError, match=r"layers holds the layer 'fc1', which is not a layer of model 'lenet5' "
                                         r"\(another model's, or a copy\); pass its name"):
        v.resolve_layers(model, [other.get_layer("fc1")])
    with pytest.raises(ValueError, match=r"layers must name at least one layer, got \[\]; the model's layers are \["):
        v.resolve_layers(model, [])
    with pytest.raises(TypeError, match="layers must hold layer names .* got the class int"):
        v.resolve_layers(model, int)
    keras = kc.keras
    block = keras.Sequential([keras.layers.Dense(8, name="inner")], name="block")
    inputs = keras.Input((4,))
    outer = keras.Model(inputs, keras.layers.Dense(2, name="out")(block(inputs)))
    with pytest.raises(ValueError, match="layers names 'inner', which is not a layer of the model"):
        v.resolve_layers(outer, "inner")  # top-level layers unless nested=True
    chosen, _ = v.resolve_layers(outer, [keras.layers.Dense], nested=True)
    assert [layer.name for layer in chosen] == ["inner", "out"]


def test_low_rank_resolves_layers_by_class_and_refuses_what_it_cannot_split():
    model = kc.models.get("lenet5")
    result = kc.factorization.low_rank(model, rank=4, layers=kc.keras.layers.Dense)
    assert {"fc1", "fc2", "logits"} <= set(result.ranks)
    with pytest.raises(ValueError, match=r"layers names 'pool1', a MaxPooling2D; this takes Dense and Conv2D"):
        kc.factorization.low_rank(model, rank=4, layers="pool1")
