import numpy as np

import kcompress as kc


def test_mlp_tiny_is_a_fifth_of_lenet5():
    model = kc.models.get("mlp_tiny", (28, 28, 1), 10)
    assert model.count_params() == 12_730
    assert model.count_params() <= kc.models.get("lenet5").count_params() / 4
    kernels = [tuple(layer.kernel.shape) for layer in model.layers if hasattr(layer, "kernel")]
    assert kernels == [(784, 16), (16, 10)]
    assert kc.models.mlp_tiny is kc.models.MODELS["mlp_tiny"]


def test_mlp_tiny_learns_real_mnist(mnist_small):
    kc.keras.utils.set_random_seed(0)
    model = kc.models.compile_classifier(kc.models.get("mlp_tiny", seed=0), 3e-3)
    model.fit(mnist_small.x_train, mnist_small.y_train, epochs=3, batch_size=64, verbose=0)
    accuracy = np.mean(np.argmax(model.predict(mnist_small.x_test, verbose=0), -1) == mnist_small.y_test)
    assert accuracy > 0.85
