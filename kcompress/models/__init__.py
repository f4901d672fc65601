"""Model zoo: ``get(name, input_shape, num_classes)`` returns a logits-output tf_keras model."""

from kcompress.models.zoo import (
    MODELS,
    get,
    lenet5,
    lenet5_student,
    lenet300_100,
    mlp_small,
    resnet20,
    tiny_cnn,
    vgg_small,
)

__all__ = ["MODELS", "get", "lenet5", "lenet5_student", "lenet300_100", "mlp_small", "resnet20", "tiny_cnn", "vgg_small"]
