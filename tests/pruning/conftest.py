import pytest

import kcompress as kc


def _finetune(model, dataset, epochs=1, batch_size=64, lr=1e-3, callbacks=None):
    kc.models.compile_classifier(model, lr)
    return model.fit(dataset.x_train, dataset.y_train, epochs=epochs, batch_size=batch_size, verbose=0,
                     callbacks=kc.pruning.callbacks() if callbacks is None else callbacks)


@pytest.fixture(scope="session")
def finetune():
    """fit(model, dataset, epochs=1, batch_size=64, lr=1e-3, callbacks=pruning callbacks)."""
    return _finetune


@pytest.fixture(scope="session")
def pruned80(trained_lenet, mnist_small):
    """(pruned-and-trained wrapped model, stripped model, history) at constant 80%. Do not mutate.

    Session-wide: three test modules read it, and each trained its own copy when it was per module.
    """
    kc.keras.utils.set_random_seed(0)
    pruned = kc.pruning.prune(trained_lenet, kc.pruning.ConstantSparsity(0.8))
    history = _finetune(pruned, mnist_small, epochs=2)
    return pruned, kc.pruning.strip(pruned), history


@pytest.fixture()
def wrapped(trained_lenet):
    """LeNet-5 in pruning wrappers, untrained: for the checks that refuse a model still wrapped."""
    return kc.pruning.prune(trained_lenet, kc.pruning.ConstantSparsity(0.8))
