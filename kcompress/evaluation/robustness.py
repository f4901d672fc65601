"""``robustness``: accuracy of a Keras model or flatbuffer on perturbed test inputs."""

from __future__ import annotations

import numpy as np
from absl import logging

from kcompress._keras import check_model
from kcompress.data import Dataset
from kcompress.evaluation import litert as _litert
from kcompress.evaluation.metrics import _check_dataset, _check_samples, keras_logits
from kcompress.validation import check_fraction, check_int

PERTURBATIONS = ("gauss", "saltpepper")


def _check_strengths(argname, values):
    if isinstance(values, (int, float)) and not isinstance(values, bool):
        values = (values,)
    try:
        values = tuple(values)
    except TypeError:
        raise TypeError(f"{argname} must be a float or a sequence of floats, got {values!r}.") from None
    return tuple(check_fraction(f"{argname} strengths", v, low_open=True) for v in values)


def perturb(x: np.ndarray, kind: str, strength: float, seed: int = 0) -> np.ndarray:
    """A perturbed copy of inputs ``x`` (scaled to [0, 1]), clipped back to [0, 1].

    Args:
        x: float inputs in [0, 1].
        kind: ``gauss`` (add N(0, strength^2) noise) or ``saltpepper`` (set a
            fraction ``strength`` of the values to 0 or 1, half each).
        strength: noise standard deviation, or fraction of values hit, in (0, 1].
        seed: the same seed gives the same perturbation, so variants compare paired.

    Example:
        >>> noisy = perturb(ds.x_test[:100], "gauss", 0.2)
    """
    if kind not in PERTURBATIONS:
        raise ValueError(f"kind must be one of {PERTURBATIONS}, got {kind!r}.")
    _check_strengths("strength", strength)
    rng = np.random.default_rng(seed)
    x = np.asarray(x, np.float32)
    if kind == "gauss":
        out = x + rng.normal(0.0, strength, size=x.shape).astype(np.float32)
    else:
        hit = rng.random(x.shape) < strength
        salt = rng.random(x.shape) < 0.5
        out = np.where(hit, salt.astype(np.float32), x)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def robustness(model_or_flatbuffer, dataset: Dataset, noise=(0.1, 0.2, 0.3), salt_pepper=(0.05,),
               max_samples: int | None = None, seed: int = 0, batch_size: int = 256) -> dict:
    """Accuracy under Gaussian noise and salt-and-pepper noise at several strengths.

    Every call with the same ``seed`` and ``max_samples`` perturbs the test inputs
    identically, so the numbers of different variants compare sample for sample.
    A flatbuffer runs in LiteRT (its inputs quantized with its own parameters).

    Args:
        model_or_flatbuffer: a tf_keras or Keras 3 model, or ``.tflite`` bytes.
        dataset: a :class:`kcompress.data.Dataset`; its test split is perturbed.
        noise: standard deviations of the added Gaussian noise, each in (0, 1].
        salt_pepper: fractions of input values set to 0 or 1, each in (0, 1]; () for none.
        max_samples: use the first ``max_samples`` test samples only.
        seed: perturbation seed.
        batch_size: Keras batch size.

    Returns:
        ``{"robust_gauss_0.1": acc, ..., "robust_saltpepper_0.05": acc}`` (fractions).

    Raises:
        TypeError: a bad model, dataset or strength type.
        ValueError: strengths outside (0, 1] or a bad ``max_samples``.

    Example:
        >>> kc.evaluation.robustness(flat, ds, noise=(0.1, 0.2, 0.3), max_samples=2000)
        {'robust_gauss_0.1': 0.988, 'robust_gauss_0.2': 0.981, ...}
    """
    _check_samples(dataset, max_samples)
    noise = _check_strengths("noise", noise)
    salt_pepper = _check_strengths("salt_pepper", salt_pepper)
    check_int("seed", seed, minimum=0)
    if isinstance(model_or_flatbuffer, (bytes, bytearray, memoryview)):
        interp = _litert.make_interpreter(bytes(model_or_flatbuffer))

        def predict(inputs):
            return _litert.predict(interp, inputs)
    else:
        predict = keras_logits(check_model(model_or_flatbuffer, "model_or_flatbuffer"), batch_size)

    kinds = [(i, j, kind, strength) for i, (kind, strengths) in enumerate((("gauss", noise), ("saltpepper", salt_pepper)))
             for j, strength in enumerate(strengths)]
    correct = dict.fromkeys(kinds, 0)
    n = 0
    if dataset.streams:
        # Batch by batch, each batch's noise seeded by its index: the same numbers on every run.
        batches = enumerate(dataset.test_batches(batch_size, max_samples))
    else:
        batches = [(None, _check_dataset(dataset, max_samples))]
    for b, (x, y) in batches:
        for key in kinds:
            i, j, kind, strength = key
            offset = 0 if b is None else (b + 1) * 1_000_003
            noisy = perturb(x, kind, strength, seed=seed * 1000 + i * 100 + j + offset)
            logits = np.reshape(predict(noisy), (len(x), -1))
            correct[key] += int(np.sum(np.argmax(logits, -1) == y))
        n += len(x)
    results = {f"robust_{kind}_{strength:g}": correct[(i, j, kind, strength)] / n for i, j, kind, strength in kinds}
    logging.info("robustness on %d samples: %s", n, results)
    return results
