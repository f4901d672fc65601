"""Model zoo: ``get(name, input_shape, num_classes)`` returns a logits-output tf_keras model."""

from kcompress.models.training import (
    STRATEGIES,
    BackupAndResume,
    RestoreBest,
    compile_classifier,
    fit,
    get_strategy,
    is_chief,
    progress_verbosity,
    writable_dir,
)
from kcompress.models.zoo import (
    MODELS,
    get,
    lenet5,
    lenet5_student,
    lenet300_100,
    mlp_small,
    mlp_tiny,
    resnet20,
    tiny_cnn,
    vgg_small,
)

__all__ = ["STRATEGIES", "BackupAndResume", "is_chief", "writable_dir", "RestoreBest", "compile_classifier", "fit", "progress_verbosity", "get_strategy", "MODELS", "get", "lenet5", "lenet5_student", "lenet300_100", "mlp_small", "mlp_tiny", "resnet20", "tiny_cnn", "vgg_small"]
