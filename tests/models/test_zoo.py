import numpy as np
import pytest

import kcompress as kc

SHAPES = {"vgg_small": (32, 32, 3), "resnet20": (32, 32, 3)}


@pytest.mark.parametrize("name", sorted(kc.models.MODELS))
class TestEveryModel:
    def test_builds_functional_logits_model(self, name):
        shape = SHAPES.get(name, (28, 28, 1))
        model = kc.models.get(name, shape, 7)
        assert isinstance(model, kc.keras.Model) and model._is_graph_network
        assert model.output_shape == (None, 7)
        assert model.layers[-1].get_config().get("activation", "linear") == "linear"
        out = model(np.zeros((2, *shape), np.float32))
        assert out.shape == (2, 7)

    def test_deterministic_under_a_seed(self, name):
        shape = SHAPES.get(name, (28, 28, 1))
        a, b, c = (kc.models.get(name, shape, 10, seed=s) for s in (5, 5, 6))
        for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
            np.testing.assert_array_equal(wa, wb)
        assert any(not np.array_equal(wa, wc) for wa, wc in zip(a.get_weights(), c.get_weights(), strict=True))


def test_lenet5_is_the_published_architecture():
    model = kc.models.get("lenet5", (28, 28, 1), 10)
    assert model.count_params() == 61706
    kernels = [tuple(layer.kernel.shape) for layer in model.layers if hasattr(layer, "kernel")]
    assert kernels == [(5, 5, 1, 6), (5, 5, 6, 16), (400, 120), (120, 84), (84, 10)]
    assert [type(layer).__name__ for layer in model.layers if "pool" in layer.name] == ["MaxPooling2D"] * 2


def test_lenet300_100_and_students_sizes():
    lenet5 = kc.models.get("lenet5").count_params()
    assert kc.models.get("lenet300_100").count_params() == 266610
    for student in ("lenet5_student", "tiny_cnn"):
        assert kc.models.get(student).count_params() <= lenet5 / 4


def test_cifar_models_run_on_32x32():
    assert kc.models.get("resnet20", (32, 32, 3), 10).count_params() == 274042
    assert len([layer for layer in kc.models.get("resnet20", (32, 32, 3)).layers if "add" in layer.name]) == 9


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(name="alexnet"), "name must be one of"),
        (dict(name="lenet5", input_shape=(28, 28)), r"input_shape must be \(height, width, channels\)"),
        (dict(name="lenet5", input_shape=(28, 0, 1)), "input_shape must be"),
        (dict(name="lenet5", input_shape="abc"), "input_shape must be"),
        (dict(name="lenet5", num_classes=1), "num_classes must be an int >= 2, got 1"),
        (dict(name="lenet5", seed=-1), "seed must be an int >= 0, got -1"),
        (dict(name="lenet5", input_shape=(8, 8, 1)), r"input_shape \(8, 8, 1\) is not usable with model 'lenet5'"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        kc.models.get(**kwargs)
