"""Product quantization of weights: per-layer k-means codebooks of sub-vectors, 8-bit codes."""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import scipy.cluster.vq
from absl import logging

from kcompress._keras import check_model, copy_model, keras
from kcompress.evaluation.entropy import huffman_bits
from kcompress.validation import resolve_layers

MAX_CODEBOOK = 256


def kmeans(points: np.ndarray, k: int, iterations: int = 25, seed: int = 0, fixed_zero: bool = False):
    """Seeded k-means (scipy's ``kmeans2``: k-means++ start, then Lloyd iterations).

    Args:
        points: ``(n, d)`` float array.
        k: number of centroids (at most the number of distinct points is used).
        iterations: Lloyd iterations.
        seed: seed of the k-means++ draws.
        fixed_zero: make centroid 0 the zero vector and keep it there (so pruned,
            all-zero sub-vectors decode to exact zeros).

    Returns:
        ``(centroids (k', d) float32, assignments (n,) int)`` with ``k' <= k``.

    Example:
        >>> centroids, codes = kmeans(np.random.rand(1000, 4), 16)
    """
    x = np.asarray(points, np.float64)
    k = int(min(k, len(np.unique(x, axis=0))))
    centroids = _kmeans2(x, k, iterations, seed)
    if fixed_zero:
        # scipy moves every centroid, so the one nearest the origin (the all-zero sub-vectors'
        # own, once they are many) becomes code-word 0 and exactly zero. Measured against Lloyd
        # iterations with a pinned zero (the numpy k-means this replaces): the same distortion
        # within seed noise on 80-90% sparse kernels, lower on average.
        nearest = int(np.argmin((centroids * centroids).sum(1)))
        centroids[[0, nearest]] = centroids[[nearest, 0]]
        centroids[0] = 0.0
    assign, _ = scipy.cluster.vq.vq(x, centroids, check_finite=False)
    return centroids.astype(np.float32), assign.astype(np.int64)


def _kmeans2(x, k, iterations, seed):
    with warnings.catch_warnings():
        # A cluster left empty keeps its previous code-word, which no point then uses: harmless
        # here (the codebook may hold an unused word), so scipy's warning about it is not shown.
        warnings.filterwarnings("ignore", "One of the clusters is empty", UserWarning)
        centroids, _ = scipy.cluster.vq.kmeans2(x, k, iter=iterations, minit="++", missing="warn",
                                                check_finite=False, rng=np.random.default_rng(seed))
    return centroids


@dataclasses.dataclass(frozen=True)
class PQLayer:
    """One product-quantized kernel.

    The kernel, reshaped to a ``(units, fan_in)`` matrix (one row per output unit
    or filter), is split along ``fan_in`` into sub-vectors of length ``subvector``
    (the last zero-padded by ``pad``); each is replaced by its nearest code-word.

    Attributes:
        name: the layer's name.
        shape: the kernel's shape.
        subvector: sub-vector length ``d``.
        codebook: ``(k, d)`` float32 code-words.
        codes: ``(units, ceil(fan_in / d))`` uint8 code-word indices.
        pad: zeros appended to each row to make ``fan_in`` a multiple of ``d``.
    """

    name: str
    shape: tuple
    subvector: int
    codebook: np.ndarray
    codes: np.ndarray
    pad: int

    def kernel(self) -> np.ndarray:
        """The decoded kernel, in the layer's shape."""
        rows = self.codebook[self.codes.astype(np.int64)].reshape(self.codes.shape[0], -1)
        rows = rows[:, : rows.shape[1] - self.pad] if self.pad else rows
        return np.ascontiguousarray(rows.T).reshape(self.shape)

    @property
    def code_bytes(self) -> int:
        """8-bit codes: one byte per sub-vector."""
        return int(self.codes.size)

    @property
    def codebook_bytes(self) -> int:
        """float32 code-words."""
        return int(4 * self.codebook.size)

    @property
    def huffman_code_bytes(self) -> int:
        """The codes Huffman-coded, plus a 5-bit code length per code-word."""
        bits, alphabet = huffman_bits(self.codes.ravel())
        return math.ceil(bits / 8) + math.ceil(5 * alphabet / 8)


@dataclasses.dataclass(frozen=True)
class PQStorage:
    """Exact storage of a product-quantized model.

    Attributes:
        code_bytes: 8-bit codes of every quantized kernel.
        codebook_bytes: their float32 codebooks.
        other_bytes: every other weight (biases, unquantized layers) as float32.
        total_bytes: the sum.
        entropy_bytes: the same with Huffman-coded codes (plus code-length tables).
        float32_bytes: the whole model as float32.
    """

    code_bytes: int
    codebook_bytes: int
    other_bytes: int
    total_bytes: int
    entropy_bytes: int
    float32_bytes: int

    @property
    def ratio(self) -> float:
        """float32 bytes / total bytes (8-bit codes)."""
        return self.float32_bytes / self.total_bytes

    @property
    def entropy_ratio(self) -> float:
        """float32 bytes / entropy bytes (Huffman-coded codes)."""
        return self.float32_bytes / self.entropy_bytes


@dataclasses.dataclass(frozen=True)
class ProductQuantized:
    """A model's product-quantized kernels and a copy of the model they came from.

    Use :func:`decode` for a plain Keras model, :meth:`storage` for its size.
    """

    model: object
    layers: dict

    def storage(self) -> PQStorage:
        """Exact bytes of the codes, the codebooks and the remaining float32 weights."""
        total_params = sum(int(np.prod(w.shape)) for w in self.model.weights if w.dtype.is_floating)
        pq_params = sum(int(np.prod(layer.shape)) for layer in self.layers.values())
        code = sum(layer.code_bytes for layer in self.layers.values())
        book = sum(layer.codebook_bytes for layer in self.layers.values())
        huff = sum(layer.huffman_code_bytes for layer in self.layers.values())
        other = 4 * (total_params - pq_params)
        return PQStorage(code_bytes=code, codebook_bytes=book, other_bytes=other, total_bytes=code + book + other,
                         entropy_bytes=huff + book + other, float32_bytes=4 * total_params)


def _candidates(model):
    return [layer for layer in model.layers
            if type(layer) in (keras.layers.Dense, keras.layers.Conv2D) and layer.built]


def product_quantize(model, subvector: int = 4, codebook_size: int = 256, layers=None,
                     iterations: int = 25, seed: int = 0) -> ProductQuantized:
    """Product-quantizes the kernels of Dense and Conv2D layers with one k-means codebook per layer.

    Each kernel, as a ``(units, fan_in)`` matrix, is cut along ``fan_in`` into
    sub-vectors of ``subvector`` weights; k-means (scipy's, seeded k-means++) finds
    ``codebook_size`` code-words per layer and every sub-vector is stored as the
    8-bit index of its nearest code-word. When a layer has all-zero sub-vectors
    (pruned weights), code-word 0 is fixed at zero so they stay exact zeros.

    Args:
        model: a Sequential or Functional tf_keras or Keras 3 model (not changed).
        subvector: sub-vector length ``d`` >= 1 (at most each layer's fan-in).
        codebook_size: code-words per layer, in [2, 256] (8-bit codes); a layer with
            fewer distinct sub-vectors gets that many.
        layers: the Dense/Conv2D layers to quantize: a name, a layer class or a list of them;
            None for all.
        iterations: k-means iterations.
        seed: k-means++ seed.

    Returns:
        A :class:`ProductQuantized`; ``decode(pq)`` is the quantized Keras model.

    Raises:
        TypeError: not a tf_keras model or a non-int argument.
        ValueError: ``codebook_size`` outside [2, 256], ``subvector`` < 1 or above a
            layer's fan-in, ``iterations`` < 1, or an unknown / unsupported layer.

    Example:
        >>> pq = product_quantize(model, subvector=4, codebook_size=256)
        >>> pq.storage().ratio, kc.evaluation.evaluate(decode(pq), ds)["accuracy"]
    """
    model = check_model(model)
    for argname, value, low, high in (("subvector", subvector, 1, None), ("codebook_size", codebook_size, 2, MAX_CODEBOOK),
                                      ("iterations", iterations, 1, None), ("seed", seed, 0, None)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{argname} must be an int, got {value!r}.")
        if value < low or (high is not None and value > high):
            allowed = f"[{low}, {high}]" if high is not None else f">= {low}"
            extra = " (codes are 8-bit)" if argname == "codebook_size" else ""
            raise ValueError(f"{argname} must be {allowed}{extra}, got {value!r}.")
    candidates = {layer.name: layer for layer in _candidates(model)}
    picked, _ = resolve_layers(model, layers, accept=lambda layer: layer.name in candidates,
                               what="built Dense and Conv2D layers")
    chosen = [layer.name for layer in picked]
    if not chosen:
        raise ValueError(f"model {model.name!r} has no Dense or Conv2D layer to quantize.")
    copy = copy_model(model)
    out = {}
    for name in chosen:
        kernel = candidates[name].kernel.numpy()
        rows = kernel.reshape(-1, kernel.shape[-1]).T  # (units, fan_in)
        fan_in = rows.shape[1]
        if subvector > fan_in:
            raise ValueError(f"subvector {subvector} is above layer {name!r}'s fan-in {fan_in}.")
        pad = (-fan_in) % subvector
        padded = np.pad(rows, ((0, 0), (0, pad)))
        points = padded.reshape(-1, subvector)
        zero_rows = not np.any(points, axis=1).all()
        centroids, assign = kmeans(points, codebook_size, iterations, seed, fixed_zero=zero_rows)
        out[name] = PQLayer(name=name, shape=tuple(kernel.shape), subvector=int(subvector), codebook=centroids,
                            codes=assign.reshape(rows.shape[0], -1).astype(np.uint8), pad=int(pad))
        logging.info("product_quantize %s: %d sub-vectors of %d -> %d code-words", name, len(points), subvector,
                     len(centroids))
    return ProductQuantized(model=copy, layers=out)


def decode(pq: ProductQuantized):
    """A plain tf_keras model with the product-quantized kernels (ready to fine-tune or export).

    Example:
        >>> model_q = decode(product_quantize(model)); kc.export.to_tflite(model_q)
    """
    if not isinstance(pq, ProductQuantized):
        raise TypeError(f"pq must be a ProductQuantized (from product_quantize), got {type(pq).__name__}.")
    model = keras.models.clone_model(pq.model)
    model.set_weights(pq.model.get_weights())
    for name, layer in pq.layers.items():
        model.get_layer(name).kernel.assign(layer.kernel())
    return model
