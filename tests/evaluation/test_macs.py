"""keras_macs counts every convolution and dense kind, agrees with the flatbuffer, and handles subclassed models."""

import warnings

import numpy as np
import pytest
import user_models as um

import kcompress as kc

keras = kc.keras
layers = keras.layers


def _flat_macs(model):
    return kc.export.describe(kc.export.to_tflite(model, verbose=False)).macs


def _no_warnings(fn, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return fn(*args)


def test_separable_conv_is_counted_by_hand():
    model = um.depthwise_net(0)
    # stem 14x14x16 (3x3x1), dw1 14x14x16 (3x3), pw1 14x14x32 (1x1x16),
    # sep2 at 7x7: depthwise 7*7*32*9 + pointwise 7*7*32*32, logits 32x10
    by_hand = (14 * 14 * 16 * 9 + 14 * 14 * 16 * 9 + 14 * 14 * 32 * 16
               + 7 * 7 * 32 * 9 + 7 * 7 * 32 * 32 + 32 * 10)
    assert _no_warnings(kc.evaluation.keras_macs, model) == by_hand == 221_408
    assert _flat_macs(model) == by_hand


# depthwise_net: test_separable_conv_is_counted_by_hand above checks it against the flatbuffer too.
@pytest.mark.parametrize("name", ["sequential_cnn", pytest.param("residual_net", marks=pytest.mark.slow), "softmax_model"])
def test_user_models_agree_with_the_flatbuffer(name):
    model = um.BUILDERS[name](0)
    assert _no_warnings(kc.evaluation.keras_macs, model) == _flat_macs(model) > 0


# One conv net and one fully connected net: the other MNIST zoo models are built of the same layer kinds
# (Conv2D, MaxPooling2D, Flatten, Dense), so they take the same counting paths.
@pytest.mark.parametrize("zoo", ["lenet5", "lenet300_100"])
def test_zoo_models_agree_with_the_flatbuffer(zoo):
    model = kc.models.get(zoo)
    assert kc.evaluation.keras_macs(model) == _flat_macs(model) > 0


def test_every_conv_kind():
    inputs = keras.Input((16, 16, 3))
    x = layers.Conv2D(4, 3, padding="same", groups=1)(inputs)
    x = layers.Conv2D(8, 3, groups=2)(x)                                     # grouped
    x = layers.Conv2DTranspose(4, 3, strides=2)(x)                           # transposed
    x = layers.Reshape((-1, 4))(x)
    x = layers.Conv1D(6, 3)(x)
    x = layers.EinsumDense("abc,cd->abd", output_shape=(None, 5))(x)
    x = layers.Flatten()(x)
    outputs = layers.Dense(3)(x)
    model = keras.Model(inputs, outputs)
    t = 29 * 29                                                               # transposed output positions
    by_hand = (16 * 16 * 4 * 27 + 14 * 14 * 8 * 9 * 2 + 14 * 14 * 8 * 9 * 4
               + (t - 2) * 6 * 3 * 4 + (t - 2) * 5 * 6 + (t - 2) * 5 * 3)
    assert _no_warnings(kc.evaluation.keras_macs, model) == by_hand
    assert _flat_macs(model) == by_hand


def test_conv3d():
    inputs = keras.Input((6, 8, 8, 2))
    outputs = layers.Conv3D(4, 3)(inputs)
    model = keras.Model(inputs, outputs)
    assert kc.evaluation.keras_macs(model) == 4 * 6 * 6 * 4 * 27 * 2


def test_subclassed_model_is_counted():
    model = um.subclassed(0)
    by_hand = 26 * 26 * 8 * 9 + 13 * 13 * 8 * 10
    assert _no_warnings(kc.evaluation.keras_macs, model) == by_hand
    assert _flat_macs(model) == by_hand
    # The traced call leaves the model as it was.
    np.testing.assert_allclose(model(np.ones((1, 28, 28, 1), np.float32)).numpy().shape, (1, 10))


def test_uncountable_layers_are_named():
    @keras.utils.register_keras_serializable(package="kcompress_tests")
    class Scale(layers.Layer):
        def build(self, input_shape):
            self.s = self.add_weight("s", shape=(input_shape[-1],))

        def call(self, x):
            return x * self.s

    inputs = keras.Input((8,))
    outputs = layers.Dense(4)(Scale(name="my_scale")(inputs))
    with pytest.warns(UserWarning, match=r"cannot count layer\(s\) 'my_scale' \(Scale\)"):
        assert kc.evaluation.keras_macs(keras.Model(inputs, outputs)) == 32


def test_unbuilt_subclassed_model_is_a_clear_error():
    with pytest.raises(ValueError, match="has never been called.*model\\(x\\[:1\\]\\)"):
        kc.evaluation.keras_macs(um.subclassed(0, build=False))
