"""Knowledge-distillation losses, one value per example so callers control reduction.

Per-example values matter: sample weights multiply them, and under
``tf.distribute`` the sum over a replica's examples is divided by the *global*
batch size; a loss that arrives already averaged can do neither correctly.
"""

from __future__ import annotations

from kcompress._keras import tf
from kcompress.validation import check_temperature

__all__ = ["check_temperature", "hint_loss", "soft_target_loss"]


def soft_target_loss(teacher_logits, student_logits, temperature: float = 3.0):
    """Hinton et al.'s soft-target term ``T^2 * KL(softmax(t/T) || softmax(s/T))`` per example.

    Computed from log-softmax, so it stays exact where probabilities underflow
    (``keras.losses.KLDivergence`` clips them at 1e-7). The ``T^2`` factor keeps
    the gradient magnitude of the soft term independent of ``T`` (its gradient
    w.r.t. the student logits is ``T * (softmax(s/T) - softmax(t/T))``).

    Args:
        teacher_logits: ``(batch, classes)`` teacher logits (no gradient flows into them).
        student_logits: ``(batch, classes)`` student logits.
        temperature: softmax temperature ``T > 0``.

    Returns:
        float tensor ``(batch,)``.

    Example:
        >>> soft_target_loss([[2.0, 0.0]], [[0.0, 0.0]], temperature=2.0).numpy()
        array([0.4805...], dtype=float32)
    """
    t = check_temperature(temperature)
    student_logits = tf.convert_to_tensor(student_logits)
    teacher_logits = tf.stop_gradient(tf.cast(teacher_logits, student_logits.dtype))
    log_p_teacher = tf.nn.log_softmax(teacher_logits / t, axis=-1)
    log_p_student = tf.nn.log_softmax(student_logits / t, axis=-1)
    kl = tf.reduce_sum(tf.exp(log_p_teacher) * (log_p_teacher - log_p_student), axis=-1)
    return (t * t) * kl


def hint_loss(teacher_features, student_features):
    """FitNets hint loss: mean squared error over each example's feature elements.

    Args:
        teacher_features: ``(batch, ...)`` teacher activations (no gradient flows into them).
        student_features: same shape, the student's (regressed) activations.

    Returns:
        float tensor ``(batch,)``.

    Example:
        >>> hint_loss([[1.0, 3.0]], [[0.0, 1.0]]).numpy()
        array([2.5], dtype=float32)
    """
    student_features = tf.convert_to_tensor(student_features)
    teacher_features = tf.stop_gradient(tf.cast(teacher_features, student_features.dtype))
    squared = tf.square(student_features - teacher_features)
    batch = tf.shape(squared)[0]
    return tf.reduce_mean(tf.reshape(squared, [batch, -1]), axis=-1)
