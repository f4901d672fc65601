import pytest

import kcompress as kc


def _finetune(model, dataset, epochs=1, batch_size=64, lr=1e-3, callbacks=None, eagerly=False):
    kc.models.compile_classifier(model, lr)
    model.run_eagerly = eagerly
    return model.fit(dataset.x_train, dataset.y_train, epochs=epochs, batch_size=batch_size, verbose=0,
                     callbacks=kc.pruning.callbacks() if callbacks is None else callbacks)


@pytest.fixture(scope="session")
def finetune():
    """fit(model, dataset, epochs=1, batch_size=64, lr=1e-3, callbacks=pruning callbacks, eagerly=False).

    ``eagerly=True`` runs the steps eagerly: a fit of a few steps then takes under a second instead of
    the ~3-4 s of tracing the train function of a pruned model. For the tests that check what the
    masks look like after a step or two (the schedule prunes at the first step); pruned80, the
    callbacks test, the MirroredStrategy test and the Keras 3 tests train pruned models in graph mode.
    """
    return _finetune


@pytest.fixture(scope="session")
def pruned80(trained_lenet, mnist_small):
    """(pruned-and-trained wrapped model, stripped model, history) at constant 80%. Do not mutate.

    Session-wide: three test modules read it, and each trained its own copy when it was per module.
    It trains, so only slow tests use it (the fast subset would pay for it).
    """
    kc.keras.utils.set_random_seed(0)
    pruned = kc.pruning.prune(trained_lenet, kc.pruning.ConstantSparsity(0.8))
    history = _finetune(pruned, mnist_small, epochs=2)  # prunes at step 1; 2 x 63 steps recover accuracy (1 x 32 left 88%)
    return pruned, kc.pruning.strip(pruned), history


@pytest.fixture()
def wrapped(trained_lenet):
    """LeNet-5 in pruning wrappers, untrained: for the checks that refuse a model still wrapped."""
    return kc.pruning.prune(trained_lenet, kc.pruning.ConstantSparsity(0.8))
