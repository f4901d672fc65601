"""Slim flatbuffers: the same model without the bytes a runtime never reads.

A converted flatbuffer carries tensor, operator and signature names, a
description, and conversion metadata. For a microcontroller-sized model those
strings are a large share of the file (about 1.3 KB of an 18.5 KB LeNet-5
student). ``slim`` removes them with TensorFlow's own flatbuffer utilities (the
LiteRT schema's object API), so the ops, tensors and weights, and therefore the
outputs, stay exactly the same.
"""

from __future__ import annotations

from kcompress import _keras  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from kcompress.export.flatbuffer import check_flatbuffer


def slim(flatbuffer) -> bytes:
    """Returns ``flatbuffer`` without names, description and metadata; it computes the same outputs.

    Args:
        flatbuffer: bytes of a ``.tflite`` model.

    Returns:
        The smaller flatbuffer's bytes.

    Raises:
        TypeError / ValueError: ``flatbuffer`` is not a TFLite flatbuffer.

    Example:
        >>> small = kcompress.export.slim(kcompress.export.to_tflite(model, "int8", representative_data=x))
    """
    data = check_flatbuffer(flatbuffer)
    # TensorFlow's flatbuffer utilities wrap the LiteRT schema's object API: read, edit, write back.
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
    flatbuffer_utils.strip_strings(model)
    for entry in model.metadata or []:
        # The runtime never reads conversion metadata; empty its buffer (indices stay valid).
        model.buffers[entry.buffer].data = None
    model.metadata = None
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))
