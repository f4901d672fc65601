"""``HintDistiller``: logits distillation plus a FitNets hint on an intermediate layer."""

from __future__ import annotations

from kcompress._keras import keras, tf
from kcompress.distillation.distiller import Distiller, _unwrap
from kcompress.distillation.losses import hint_loss
from kcompress.validation import check_number

__all__ = ["HintDistiller"]

_REGRESSORS = ("auto", "learned", "identity")


def _check_hint_weight(hint_weight) -> float:
    return check_number("hint_weight", hint_weight, 0)


def _feature_model(model, layer_name, argname):
    """A model sharing ``model``'s layers that outputs ``[logits, features of layer_name]``."""
    if not isinstance(layer_name, str) or not layer_name:
        raise TypeError(f"{argname}_layer must be a layer name (str), got {layer_name!r}.")
    if not getattr(model, "_is_graph_network", False):
        raise TypeError(
            f"{argname} must be a Functional or Sequential tf_keras model to take hints from layer "
            f"{layer_name!r}, got {type(model).__name__}."
        )
    by_name = {layer.name: layer for layer in model.layers}
    names = list(by_name)
    # A pruned or QAT copy wraps its layers (``prune_low_magnitude_fc2``); the wrapped name works too.
    for layer in model.layers:
        by_name.setdefault(_unwrap(layer).name, layer)
    if layer_name not in by_name:
        raise ValueError(f"{argname}_layer must name a layer of {argname} {model.name!r} (one of {names}), got {layer_name!r}.")
    features = by_name[layer_name].output
    return keras.Model(model.inputs, [model.outputs[0], features], name=f"{model.name}_hint")


class _Untracked:
    """Holds objects Keras must not track (they share the student's and teacher's layers)."""

    def __init__(self, **objects):
        self.__dict__.update(objects)


@keras.utils.register_keras_serializable(package="kcompress")
class HintDistiller(Distiller):
    """:class:`Distiller` plus a FitNets hint (Romero et al. 2015) on an intermediate layer.

    The student's ``student_layer`` activations are compared with the teacher's
    ``teacher_layer`` activations, and ``hint_weight`` times their mean squared
    error is added to the loss:
    ``alpha * student_loss + (1 - alpha) * T^2 * KL + hint_weight * hint_loss``.
    ``hint_loss`` is logged too.

    When the two activations differ in shape (a thinner student), a small trained
    regressor maps the student's to the teacher's shape: a ``Dense`` layer for
    ``(batch, units)`` features, a 1x1 ``Conv2D`` for ``(batch, h, w, c)`` maps of
    equal height and width. It trains with the student and is not part of it, so
    the deployed student is unchanged in size. When the shapes are equal, as for a
    pruned or quantization-aware copy of the teacher, the default
    (``regressor="auto"``) compares them directly: the student must reproduce the
    teacher's own features, a dense target (e.g. 84 values per example for
    LeNet-5's ``fc2``) that recovers a pruned copy better than logits alone (see
    ``experiments/distill.py``). Layer names inside pruning / QAT wrappers work as
    they are (``"fc2"`` finds ``prune_low_magnitude_fc2``).

    Args:
        student: a Functional/Sequential tf_keras model with logits output.
        teacher: a trained Functional/Sequential tf_keras model.
        student_layer: name of the student layer whose output is guided.
        teacher_layer: name of the teacher layer that gives the hint.
        regressor: ``"auto"`` (identity for equal shapes, else learned), ``"learned"``
            (always a trained regressor, as in FitNets) or ``"identity"`` (shapes must match).
        **kwargs: passed to ``keras.Model``.

    Raises:
        TypeError: subclassed models or a layer name that is not a string.
        ValueError: an unknown layer name or ``regressor``, feature shapes no regressor
            can map (or that differ, with ``"identity"``), and everything
            :class:`Distiller` rejects.

    Example:
        >>> d = kc.distillation.HintDistiller(student, teacher, student_layer="conv2",
        ...                                   teacher_layer="conv2")
        >>> d.compile("adam", metrics=["accuracy"], alpha=0.1, temperature=4, hint_weight=0.5)
        >>> # Recovering a pruned copy of the teacher: its own fc2 features are the hint.
        >>> pruned = kc.pruning.prune(teacher, kc.pruning.ConstantSparsity(0.8))
        >>> d = kc.distillation.HintDistiller(pruned, teacher, student_layer="fc2", teacher_layer="fc2")
        >>> d.compile("adam", metrics=["accuracy"], alpha=0.5, temperature=1, hint_weight=0.1)
    """

    def __init__(self, student, teacher, student_layer: str, teacher_layer: str, regressor: str = "auto",
                 **kwargs):
        if regressor not in _REGRESSORS:
            raise ValueError(f"regressor must be one of {list(_REGRESSORS)}, got {regressor!r}.")
        super().__init__(student, teacher, **kwargs)
        self.student_layer, self.teacher_layer, self.regressor_mode = student_layer, teacher_layer, regressor
        s_model = _feature_model(self.student, student_layer, "student")
        t_model = _feature_model(self.teacher, teacher_layer, "teacher")
        s_shape, t_shape = tuple(s_model.output_shape[1]), tuple(t_model.output_shape[1])
        if regressor == "identity" and s_shape != t_shape:
            raise ValueError(
                f"regressor='identity' needs equal feature shapes, got student_layer {student_layer!r} output "
                f"{s_shape} and teacher_layer {teacher_layer!r} output {t_shape}; use regressor='auto' or 'learned'."
            )
        if regressor != "learned" and s_shape == t_shape:
            regressor = None
        elif len(s_shape) == 2 and len(t_shape) == 2:
            regressor = keras.layers.Dense(t_shape[-1], name="hint_regressor")
        elif len(s_shape) == 4 and len(t_shape) == 4 and s_shape[1:3] == t_shape[1:3]:
            regressor = keras.layers.Conv2D(t_shape[-1], 1, name="hint_regressor")
        else:
            raise ValueError(
                f"student_layer {student_layer!r} outputs {s_shape} and teacher_layer {teacher_layer!r} outputs "
                f"{t_shape}; a hint needs (batch, units) for both or (batch, h, w, c) maps of equal h and w."
            )
        if regressor is not None:
            regressor.build(s_shape)
        self.regressor = regressor  # None: the features are compared as they are
        self._hint = _Untracked(student=s_model, teacher=t_model)
        self.hint_weight = 1.0
        self.hint_loss_tracker = keras.metrics.Mean(name="hint_loss")

    def compile(self, optimizer="adam", metrics=None, student_loss_fn=None, distillation_loss_fn=None,
                alpha: float | None = None, temperature: float | None = None, hint_weight: float = 1.0, **kwargs):
        """:meth:`Distiller.compile` plus ``hint_weight`` (>= 0), the weight of the hint loss.

        Raises:
            ValueError: ``hint_weight`` negative or not finite, and what :meth:`Distiller.compile` rejects.
        """
        hint_weight = _check_hint_weight(hint_weight)
        super().compile(optimizer=optimizer, metrics=metrics, student_loss_fn=student_loss_fn,
                        distillation_loss_fn=distillation_loss_fn, alpha=alpha, temperature=temperature, **kwargs)
        self.hint_weight = hint_weight
        self._compile_args["hint_weight"] = hint_weight

    def get_config(self):
        return {**super().get_config(), "student_layer": self.student_layer, "teacher_layer": self.teacher_layer,
                "regressor": self.regressor_mode}

    def _trackers(self):
        return [*super()._trackers(), self.hint_loss_tracker]

    def _teacher_outputs(self, x):
        logits, features = self._hint.teacher(x, training=False)
        return [self._as_teacher_logits(logits), tf.stop_gradient(features)]

    def _student_outputs(self, x, training):
        logits, features = self._hint.student(x, training=training)
        return [logits, features if self.regressor is None else self.regressor(features)]

    def _variables_to_train(self):
        extra = [] if self.regressor is None else self.regressor.trainable_variables
        return [*self.student.trainable_variables, *extra]

    def _term_weights(self) -> dict:
        return {**super()._term_weights(), "hint_loss": self.hint_weight}

    def _loss_terms(self, y, student_outputs, teacher_outputs) -> dict:
        terms = super()._loss_terms(y, student_outputs, teacher_outputs)
        terms["hint_loss"] = hint_loss(teacher_outputs[1], student_outputs[1])
        return terms
