"""Clustering: weight sharing (TFMOT clustering), product quantization.

The entropy-coded size of a clustered model is a metric: its home is
``kcompress.evaluation.entropy_coded_size``; ``kc.clustering.entropy_coded_size`` (and
``EntropyReport``, ``TensorEntropy``, ``ENCODINGS``, ``quantize_levels``) are the same objects.

Example:
    >>> import kcompress as kc
    >>> clustered = kc.clustering.cluster(pruned, clusters=32)   # zeros kept for a pruned model
    >>> kc.models.compile_classifier(clustered, 1e-4); kc.models.fit(clustered, ds, epochs=3)
    >>> shared = kc.clustering.strip(clustered)
    >>> kc.evaluation.entropy_coded_size(shared).ratio          # Deep Compression accounting
    >>> pq = kc.clustering.product_quantize(model, subvector=4, codebook_size=256)
    >>> kc.clustering.decode(pq), pq.storage().total_bytes
"""

from kcompress.clustering.cluster import INITS, MAX_CLUSTERS, cluster, is_clustered, strip
from kcompress.clustering.product import (
    MAX_CODEBOOK,
    PQLayer,
    PQStorage,
    ProductQuantized,
    decode,
    product_quantize,
)

# Kept here for the code that imports them from clustering (they used to live in it).
from kcompress.evaluation.entropy import (  # noqa: I001
    ENCODINGS,
    EntropyReport,
    TensorEntropy,
    entropy_coded_size,
    quantize_levels,
)

# Helpers (kmeans in .product; huffman_bits / huffman_code_lengths in kcompress.evaluation.entropy)
# stay in their modules.
__all__ = [
    "ENCODINGS", "INITS", "MAX_CLUSTERS", "MAX_CODEBOOK", "EntropyReport", "PQLayer", "PQStorage",
    "ProductQuantized", "TensorEntropy", "cluster", "decode", "entropy_coded_size", "is_clustered",
    "product_quantize", "quantize_levels", "strip",
]
