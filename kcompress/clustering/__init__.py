"""Clustering: weight sharing (TFMOT clustering), product quantization, entropy-coded size.

Example:
    >>> import kcompress as kc
    >>> clustered = kc.clustering.cluster(pruned, clusters=32)   # zeros kept for a pruned model
    >>> kc.models.compile_classifier(clustered, 1e-4); kc.models.fit(clustered, ds, epochs=3)
    >>> shared = kc.clustering.strip(clustered)
    >>> kc.clustering.entropy_coded_size(shared).ratio          # Deep Compression accounting
    >>> pq = kc.clustering.product_quantize(model, subvector=4, codebook_size=256)
    >>> kc.clustering.decode(pq), pq.storage().total_bytes
"""

from kcompress.clustering.cluster import INITS, MAX_CLUSTERS, cluster, is_clustered, strip
from kcompress.clustering.entropy import (
    ENCODINGS,
    EntropyReport,
    TensorEntropy,
    entropy_coded_size,
    quantize_levels,
)
from kcompress.clustering.product import (
    MAX_CODEBOOK,
    PQLayer,
    PQStorage,
    ProductQuantized,
    decode,
    product_quantize,
)

# Helpers (kmeans in .product, huffman_bits / huffman_code_lengths in .entropy) stay in their modules.
__all__ = [
    "ENCODINGS", "INITS", "MAX_CLUSTERS", "MAX_CODEBOOK", "EntropyReport", "PQLayer", "PQStorage",
    "ProductQuantized", "TensorEntropy", "cluster", "decode", "entropy_coded_size", "is_clustered",
    "product_quantize", "quantize_levels", "strip",
]
