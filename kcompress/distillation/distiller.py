"""``Distiller``: a ``keras.Model`` that trains a student on a frozen teacher's soft targets.

The reference recipe users copy (the keras.io knowledge-distillation example)
has known defects, each avoided here and covered by a test:

* teacher and student swapped (one version called the student "teacher"): the
  arguments are keyword-checked, and only the student's variables are trained;
* the ``T^2`` factor left out, which makes the soft term vanish as ``T`` grows;
* sample weights dropped: they multiply every per-example loss term;
* epoch logs that show the last batch's loss: ``Mean`` trackers listed in
  :attr:`Distiller.metrics` average over the epoch and reset each epoch;
* no ``call()``, so ``predict``/``evaluate``/``save`` fail: ``call`` runs the student;
* a wrong (validation) loss under ``tf.distribute.MirroredStrategy``: per-example
  losses are summed per replica and divided by the *global* batch size (all-reduced,
  so an uneven last batch is exact too), and the trackers average examples, so the
  logged numbers equal the single-device ones.
"""

from __future__ import annotations

import copy
import hashlib
import weakref
from collections import OrderedDict

import numpy as np
from absl import logging

from kcompress._keras import check_model, keras, tf
from kcompress.distillation.losses import soft_target_loss
from kcompress.validation import check_fraction, check_temperature

__all__ = ["Distiller"]

_PROBABILITY_FLOOR = 1e-30  # log of a probability that underflowed to 0 in float32
_CACHE_MAX_BYTES = 1 << 30  # teacher logits kept for in-memory arrays, at most this much per array
_CACHE_ENTRIES = 4
_LOGITS_CACHE: OrderedDict = OrderedDict()  # key -> (weakref to the array's owner, logits)


def _array_owner(x: np.ndarray) -> np.ndarray:
    while isinstance(x.base, np.ndarray):
        x = x.base
    return x


def _array_key(x: np.ndarray) -> tuple:
    """Which memory ``x`` views, and a sample of what it holds (views of one array share the first part)."""
    flat = x.reshape(-1) if x.flags.c_contiguous else np.ravel(x)
    sample = np.ascontiguousarray(flat[:: max(1, flat.size // 4096)])
    return (x.__array_interface__["data"][0], x.shape, x.strides, x.dtype.str,
            hashlib.blake2b(sample.tobytes(), digest_size=16).hexdigest())


def _weights_digest(model) -> str:
    h = hashlib.blake2b(digest_size=16)
    for w in model.weights:
        h.update(np.ascontiguousarray(w.numpy()).tobytes())
    return h.hexdigest()


def _check_alpha(alpha) -> float:
    """The hard-label loss weight: a number in [0, 1]."""
    return check_fraction("alpha", alpha)


def _unwrap(layer):
    """The layer inside pruning / quantization wrappers."""
    while hasattr(layer, "layer") and isinstance(layer.layer, keras.layers.Layer):
        layer = layer.layer
    return layer


def _model_params(model) -> int:
    """Parameters of ``model``'s own layers, not the pruning masks or quantizer ranges wrapped around them.

    ``count_params`` counts those too, which doubles a pruned model's kernels.
    """
    seen, total = set(), 0

    def visit(layer):
        nonlocal total
        inner = _unwrap(layer)
        if isinstance(inner, keras.Model):
            for sub in inner.layers:
                visit(sub)
            return
        # A wrapper's own variables (masks, thresholds, ranges) are bookkeeping; the wrapped layer's count.
        for w in inner.weights:
            if id(w) not in seen:
                seen.add(id(w))
                total += int(w.shape.num_elements() or 0)

    for layer in getattr(model, "layers", []):
        visit(layer)
    return total


def ends_with_softmax(model) -> bool:
    """True when ``model``'s last layer turns logits into probabilities (softmax)."""
    layers = getattr(model, "layers", None)
    if not layers:
        return False
    last = _unwrap(layers[-1])
    if isinstance(last, keras.Model):
        return ends_with_softmax(last)
    if isinstance(last, keras.layers.Softmax):
        return True
    activation = getattr(last, "activation", None)
    # QAT wraps the activation in an object that keeps the original as `.activation`.
    activation = getattr(activation, "activation", activation)
    return getattr(activation, "__name__", None) == "softmax" or activation == "softmax"


def _single_output_shape(model, argname):
    outputs = getattr(model, "outputs", None)
    if outputs is not None and len(outputs) != 1:
        raise ValueError(f"{argname} must have exactly one output (logits), got {len(outputs)} outputs.")
    try:
        return tuple(model.output_shape)
    except (AttributeError, RuntimeError):
        return None  # a subclassed model that was never called: nothing to compare


def _check_pair(student, teacher):
    if student is teacher:
        raise ValueError("student and teacher must be different models, got the same object for both.")
    s_shape = _single_output_shape(student, "student")
    t_shape = _single_output_shape(teacher, "teacher")
    if s_shape is not None and t_shape is not None and s_shape[1:] != t_shape[1:]:
        raise ValueError(
            f"teacher and student must output the same shape of logits, got teacher output shape {t_shape} "
            f"and student output shape {s_shape}."
        )
    try:
        s_in, t_in = student.input_shape, teacher.input_shape
    except (AttributeError, RuntimeError):
        return
    if not isinstance(s_in, list) and not isinstance(t_in, list) and s_in[1:] != t_in[1:]:
        raise ValueError(
            f"teacher and student must take the same inputs, got teacher input shape {t_in} and student "
            f"input shape {s_in}."
        )


def _per_example_loss(fn, argname):
    """A callable returning one loss per example, from ``None``, a Loss, a name or a function."""
    if fn is None:
        return None
    if isinstance(fn, str):
        try:
            fn = keras.losses.get(fn)
        except ValueError as err:
            raise ValueError(f"{argname} must be a keras loss, its name or a callable, got {fn!r}.") from err
    if isinstance(fn, keras.losses.Loss):
        fn = copy.copy(fn)  # the caller's object keeps its own reduction
        fn.reduction = keras.losses.Reduction.NONE
        return fn
    if callable(fn):
        return fn
    raise TypeError(f"{argname} must be None, a keras.losses.Loss, a loss name or a callable, got {fn!r}.")


def _to_per_example(values, argname):
    values = tf.convert_to_tensor(values)
    if values.shape.rank == 0:
        raise ValueError(
            f"{argname} must return one loss per example (shape (batch,)), got a scalar; pass a "
            "keras.losses.Loss instance (its reduction is set to NONE) or a function without reduction."
        )
    if values.shape.rank > 1:
        values = tf.reduce_mean(values, axis=list(range(1, values.shape.rank)))
    return values


def _serialize(obj):
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    try:
        return keras.saving.serialize_keras_object(obj)
    except (TypeError, ValueError):
        logging.warning("Cannot serialize %r; it is left out of the compile config.", obj)
        return None


def _serialize_model(model):
    config = keras.saving.serialize_keras_object(model)
    # The models' own compile settings (e.g. the teacher's optimizer) are not the distiller's.
    config.pop("compile_config", None)
    return config


@keras.utils.register_keras_serializable(package="kcompress")
class Distiller(keras.Model):
    """Trains ``student`` on hard labels and on a frozen ``teacher``'s temperature-softened outputs.

    ``loss = alpha * student_loss(y, s) + (1 - alpha) * T^2 * KL(softmax(t / T) || softmax(s / T))``
    (plus the student's regularization losses), with ``s`` and ``t`` the student's and
    teacher's logits. Every term is computed per example, multiplied by the sample
    weight, summed and divided by the global batch size (Keras's
    ``SUM_OVER_BATCH_SIZE`` convention), so results are the same on one device and
    under ``tf.distribute.MirroredStrategy``.

    The teacher is frozen: called with ``training=False`` once per batch (so its
    dropout is off and its BatchNorm statistics stay put) and left out of
    :attr:`trainable_weights`, so only the student's variables are updated. The
    teacher model itself is not changed (its ``trainable`` flag included: a copy
    of it, e.g. for pruning, still trains).
    ``call`` runs the student, so ``predict`` and ``evaluate`` work, and
    :meth:`save` (and so ``ModelCheckpoint``) writes the whole distiller, which loads and
    keeps training; ``distiller.student.save(path)`` writes the model you deploy. A pruned student
    (``kcompress.pruning.prune`` or TFMOT's ``prune_low_magnitude``) or a QAT student
    (``kcompress.quantization.quantize_aware`` or TFMOT's ``quantize_model``) trains with
    one ``fit``: pruning callbacks find its layers through :attr:`layers`. For a
    feature-based (FitNets) hint on top, see :class:`kcompress.distillation.HintDistiller`.

    Logged metrics, averaged over the epoch: ``loss`` (the total above),
    ``student_loss``, ``distillation_loss`` (``T^2 * KL``, before the ``1 - alpha``
    weight) and the compiled ``metrics`` on the student's logits; ``val_`` ones too.

    Args:
        student: a tf_keras model with one logits output (no softmax); a Keras 3 model is converted (``d.student``).
        teacher: a trained tf_keras model with the same input and output shapes. If its
            last layer applies softmax, log-probabilities are used as its logits (a
            warning is logged); they give the same softened distribution.
        **kwargs: passed to ``keras.Model`` (e.g. ``name``).

    Raises:
        TypeError: a model that is not a tf_keras model.
        ValueError: the same object as both models, output or input shapes that differ,
            more than one output, or a student that ends with softmax.

    Example:
        >>> teacher = kc.models.get("lenet5")  # trained
        >>> d = kc.distillation.Distiller(student=kc.models.get("lenet5_student"), teacher=teacher)
        >>> d.compile(optimizer="adam", metrics=["accuracy"], alpha=0.1, temperature=6)
        >>> d.fit(ds.x_train, ds.y_train, epochs=10, validation_split=0.1)
        >>> d.student.save("student.keras")  # d.save("distiller.keras") saves everything
    """

    def __init__(self, student, teacher, **kwargs):
        student = check_model(student, "student")
        teacher = check_model(teacher, "teacher")
        _check_pair(student, teacher)
        if ends_with_softmax(student):
            raise ValueError(
                f"student {student.name!r} ends with a softmax, but distillation needs logits: build it "
                "without the final softmax (kcompress.models.get(...) models output logits) and use "
                "keras.layers.Softmax or tf.nn.softmax only at inference."
            )
        super().__init__(**kwargs)
        self._teacher_gives_probabilities = ends_with_softmax(teacher)
        if self._teacher_gives_probabilities:
            logging.warning(
                "teacher %r ends with a softmax; its log-probabilities are used as logits (same softened "
                "targets, but probabilities that underflowed to 0 are floored at %g).",
                teacher.name, _PROBABILITY_FLOOR,
            )
        teacher_params, student_params = _model_params(teacher), _model_params(student)
        if teacher_params < student_params:
            logging.warning(
                "teacher %r has fewer parameters (%d) than student %r (%d); teacher and student may be swapped "
                "(Distiller(student=..., teacher=...)).",
                teacher.name, teacher_params, student.name, student_params,
            )
        self.student = student
        self.teacher = teacher
        self.alpha = 0.1
        self.temperature = 3.0
        self._student_loss_fn = keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, reduction=keras.losses.Reduction.NONE
        )
        self._distillation_loss_fn = None
        self._compile_args: dict = {}
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.student_loss_tracker = keras.metrics.Mean(name="student_loss")
        self.distillation_loss_tracker = keras.metrics.Mean(name="distillation_loss")
        # Built when the student is: it holds all the weights, and call() only runs it.
        self.built = bool(student.built)
        # train_step never goes through __call__, so Keras would not learn the input signature a
        # SavedModel needs ("cannot be saved ... input shape is not available"): take the student's.
        inputs = getattr(student, "inputs", None)
        if inputs:
            self._set_save_spec(inputs[0] if len(inputs) == 1 else inputs)
        elif student.built and hasattr(student, "save_spec") and student.save_spec() is not None:
            args, kwargs = student.save_spec()
            self._set_save_spec(args[0] if len(args) == 1 else args, None, kwargs)

    # ------------------------------------------------------------------ compile / config

    def compile(self, optimizer="adam", metrics=None, student_loss_fn=None, distillation_loss_fn=None,
                alpha: float | None = None, temperature: float | None = None, **kwargs):
        """Configures training.

        Args:
            optimizer: a Keras optimizer or its name.
            metrics: metrics computed on the student's logits and the labels, e.g. ``["accuracy"]``.
            student_loss_fn: hard-label loss; default sparse categorical cross-entropy from
                logits. A ``keras.losses.Loss`` (its reduction is set to ``NONE`` on a copy),
                a loss name, or ``fn(y_true, logits)`` returning one value per example.
            distillation_loss_fn: ``fn(teacher_probs, student_probs)`` on the temperature-
                softened distributions returning one value per example (e.g.
                ``keras.losses.KLDivergence()``); the result is multiplied by ``T^2``.
                Default: the exact KL divergence computed from log-softmax.
            alpha: weight of the hard-label loss in [0, 1]; the soft loss gets ``1 - alpha``.
                ``None``: keep the current value (0.1 for a new distiller, the saved one for a
                loaded one).
            temperature: softmax temperature ``T > 0``; ``None``: keep the current value (3.0
                for a new distiller).
            **kwargs: other ``keras.Model.compile`` arguments (``run_eagerly``,
                ``steps_per_execution``, ``jit_compile``). ``loss`` is not accepted.

        Raises:
            ValueError: ``alpha`` outside [0, 1], ``temperature <= 0``, or a ``loss`` argument.
            TypeError: a loss function that is not callable.
        """
        # A SavedModel restores compile() with loss=None (and empty loss weights); nothing to refuse.
        for key in ("loss", "loss_weights", "weighted_metrics"):
            if key in kwargs and kwargs[key] in (None, [], {}):
                kwargs.pop(key)
        if "loss" in kwargs:
            raise ValueError(
                f"Distiller computes its own loss; pass student_loss_fn / distillation_loss_fn instead of "
                f"loss={kwargs['loss']!r}."
            )
        alpha = _check_alpha(self.alpha if alpha is None else alpha)
        temperature = check_temperature(self.temperature if temperature is None else temperature)
        student_fn = _per_example_loss(student_loss_fn, "student_loss_fn")
        distill_fn = _per_example_loss(distillation_loss_fn, "distillation_loss_fn")
        super().compile(optimizer=optimizer, metrics=metrics, **kwargs)
        self.alpha, self.temperature = alpha, temperature
        if student_fn is not None:
            self._student_loss_fn = student_fn
        else:
            self._student_loss_fn = keras.losses.SparseCategoricalCrossentropy(
                from_logits=True, reduction=keras.losses.Reduction.NONE
            )
        self._distillation_loss_fn = distill_fn
        self._compile_args = dict(
            optimizer=optimizer, metrics=metrics, student_loss_fn=student_loss_fn,
            distillation_loss_fn=distillation_loss_fn, alpha=alpha, temperature=temperature,
            **{k: v for k, v in kwargs.items() if k in ("run_eagerly", "steps_per_execution", "jit_compile")},
        )

    def get_compile_config(self):
        if not self._is_compiled or not self._compile_args:
            return None
        config = {}
        for key, value in self._compile_args.items():
            if key == "optimizer":
                value = self.optimizer
            if key == "metrics" and value is not None:
                value = [_serialize(m) for m in value]
            else:
                value = _serialize(value)
            config[key] = value
        return config

    def compile_from_config(self, config):
        config = dict(config)
        for key in ("optimizer", "student_loss_fn", "distillation_loss_fn"):
            if isinstance(config.get(key), dict):
                config[key] = keras.saving.deserialize_keras_object(config[key])
        if config.get("metrics") is not None:
            config["metrics"] = [keras.saving.deserialize_keras_object(m) if isinstance(m, dict) else m
                                 for m in config["metrics"]]
        self.compile(**config)
        if self.student.built and isinstance(self.optimizer, keras.optimizers.Optimizer):
            # Create the optimizer's slots now so the saved optimizer state can be loaded into them.
            self.optimizer.build(self._variables_to_train())

    def get_config(self):
        # alpha and temperature are here too: a SavedModel restores compile() without them.
        return {"name": self.name, "student": _serialize_model(self.student), "teacher": _serialize_model(self.teacher),
                "alpha": self.alpha, "temperature": self.temperature}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        for key in ("student", "teacher"):
            if isinstance(config.get(key), dict):
                # keras.layers.deserialize knows Functional and Sequential, also while a SavedModel loads.
                config[key] = keras.layers.deserialize(config[key], custom_objects=custom_objects)
        alpha, temperature = config.pop("alpha", None), config.pop("temperature", None)
        distiller = cls(**config)
        if alpha is not None:
            distiller.alpha = _check_alpha(alpha)
        if temperature is not None:
            distiller.temperature = check_temperature(temperature)
        return distiller

    # ------------------------------------------------------------------ model API

    @property
    def metrics(self):
        seen, out = set(), []
        for m in [*self._trackers(), *super().metrics]:
            if id(m) not in seen:
                seen.add(id(m))
                out.append(m)
        return out

    @property
    def trainable_weights(self):
        """The student's trainable weights (and those of subclasses' helper layers), never the teacher's."""
        if not self.trainable:
            return []
        return self._dedup_weights(list(self._variables_to_train()))

    @property
    def non_trainable_weights(self):
        # The teacher's weights and the student's non-trainable ones (not the loss trackers' state).
        skip = {id(w) for w in self.trainable_weights} | {id(v) for m in self._trackers() for v in m.variables}
        return [w for w in self.weights if id(w) not in skip]

    @property
    def layers(self):
        """``[student]``: what callbacks and reports that walk ``model.layers`` should see.

        Pruning callbacks (``UpdatePruningStep``, ``kcompress.pruning.callbacks()``) and
        sparsity reports find the student's pruned layers through it; the frozen
        teacher, which is not trained, stays out (it is :attr:`teacher`).
        """
        return [self.student]

    def _trackers(self):
        return [self.loss_tracker, self.student_loss_tracker, self.distillation_loss_tracker]

    def call(self, inputs, training=None):
        """Runs the student (so ``predict``, ``evaluate`` and export see the student)."""
        return self.student(inputs, training=training)

    def fit(self, x=None, y=None, *args, cache_teacher: bool = True, **kwargs):
        """``keras.Model.fit``; a pruned student needs ``callbacks=kcompress.pruning.callbacks()``.

        With in-memory arrays (one NumPy input ``x`` and labels ``y``) the frozen teacher's
        logits are computed once, before the first epoch, and fed with the labels, instead
        of running the teacher on every batch of every epoch. They are exactly what the
        teacher gives (``training=False``), so the loss, the metrics and the learned
        weights are the same; they are also kept (for up to 4 arrays, at most 1 GiB each)
        for later fits with the same teacher weights on the same array or a slice of it,
        as a search that distils many students from one teacher does. ``cache_teacher=False``
        runs the teacher per batch, as do ``tf.data`` inputs, multi-input models and
        subclasses that need more of the teacher than its logits (e.g. a hint).

        Raises:
            ValueError: the student holds pruning wrappers and ``callbacks`` lacks the pruning step
                callback (checked before training; TFMOT would fail inside the training graph).
            TypeError: ``cache_teacher`` is not a bool.
        """
        from kcompress.pruning.prune import (
            has_pruning_step_callback,
            is_pruned,
            pruning_callbacks_error,
        )
        from kcompress.validation import check_bool

        check_bool("cache_teacher", cache_teacher)
        callbacks = kwargs.get("callbacks", args[3] if len(args) > 3 else None)
        if is_pruned(self.student) and not has_pruning_step_callback(callbacks):
            raise pruning_callbacks_error(self.student.name)
        validation = kwargs.get("validation_data")
        cached = (cache_teacher and not args and self._logits_are_all_it_needs()
                  and self._cacheable(x) and isinstance(y, np.ndarray) and len(y) == len(x)
                  and (validation is None or (isinstance(validation, tuple) and len(validation) == 2
                                              and self._cacheable(validation[0])
                                              and isinstance(validation[1], np.ndarray))))
        if cached:
            y = (y, self.teacher_logits(x))
            if validation is not None:
                kwargs["validation_data"] = (validation[0], (validation[1], self.teacher_logits(validation[0])))
        self._set_cached_targets(cached)
        try:
            return super().fit(x, y, *args, **kwargs)
        finally:
            self._set_cached_targets(False)

    def teacher_logits(self, x, batch_size: int = 1024) -> np.ndarray:
        """The frozen teacher's logits for the array ``x`` (float32), as the loss sees them.

        Computed in batches of ``batch_size`` and kept for later calls with the same teacher
        weights and the same array (or a view of it), see :meth:`fit`.
        """
        from kcompress.validation import check_int

        check_int("batch_size", batch_size, 1)
        if not self._cacheable(x):
            raise TypeError(f"x must be a NumPy array of the student's input, got {type(x).__name__}.")
        key = (id(self.teacher), _weights_digest(self.teacher), self._teacher_gives_probabilities, _array_key(x))
        hit = _LOGITS_CACHE.get(key)
        if hit is not None and hit[0]() is _array_owner(x):
            _LOGITS_CACHE.move_to_end(key)
            return hit[1]
        forward = tf.function(lambda batch: self._as_teacher_logits(self.teacher(batch, training=False)),
                              reduce_retracing=True)
        logits = np.concatenate([forward(tf.constant(x[i:i + batch_size])).numpy().astype(np.float32)
                                 for i in range(0, len(x), batch_size)]) if len(x) else \
            np.zeros((0,) + tuple(self.teacher.output_shape[1:]), np.float32)
        if logits.nbytes <= _CACHE_MAX_BYTES:
            _LOGITS_CACHE[key] = (weakref.ref(_array_owner(x)), logits)
            while len(_LOGITS_CACHE) > _CACHE_ENTRIES:
                _LOGITS_CACHE.popitem(last=False)
        return logits

    def _cacheable(self, x) -> bool:
        inputs = getattr(self.student, "inputs", None)
        return isinstance(x, np.ndarray) and x.ndim >= 1 and (inputs is None or len(inputs) == 1)

    def _logits_are_all_it_needs(self) -> bool:
        """True where the training step uses nothing of the teacher but its logits (not a subclass's hint)."""
        cls = type(self)
        return all(getattr(cls, name) is getattr(Distiller, name)
                   for name in ("_teacher_outputs", "train_step", "test_step", "_loss_terms"))

    def _set_cached_targets(self, cached: bool):
        """Targets are ``(labels, teacher logits)`` while ``cached``; Keras's traced steps are rebuilt on a change."""
        if getattr(self, "_cached_targets", False) != cached:
            self.train_function = self.test_function = self.predict_function = None
        self._cached_targets = cached

    def save(self, filepath, overwrite=True, save_format=None, **kwargs):
        """Saves the whole distiller: student, teacher, compile settings and optimizer state.

        So ``keras.callbacks.ModelCheckpoint`` checkpoints a resumable distillation:
        ``keras.models.load_model(path)`` returns a compiled :class:`Distiller` that keeps
        training. Use ``.keras`` or a SavedModel folder; to ship the student, save
        ``distiller.student`` (any format, ``.h5`` included).

        Raises:
            ValueError: an ``.h5`` path: Keras writes HDF5 only for Functional and Sequential
                models, which a Distiller is not.
        """
        path = str(filepath)
        if save_format in ("h5", "hdf5") or (save_format is None and path.endswith((".h5", ".hdf5"))):
            raise ValueError(
                f"filepath {path!r}: a Distiller saves as .keras or a SavedModel folder (Keras writes HDF5 "
                "only for Functional/Sequential models); save it as 'distiller.keras', or save the "
                "student alone with distiller.student.save(...)."
            )
        super().save(filepath, overwrite=overwrite, save_format=save_format, **kwargs)

    # ------------------------------------------------------------------ losses

    def _teacher_outputs(self, x):
        """Teacher logits (and whatever subclasses add), frozen: ``training=False``, no gradient."""
        return [self._as_teacher_logits(self.teacher(x, training=False))]

    def _as_teacher_logits(self, outputs):
        if self._teacher_gives_probabilities:
            outputs = tf.math.log(tf.maximum(outputs, _PROBABILITY_FLOOR))
        return tf.stop_gradient(outputs)

    def _student_outputs(self, x, training):
        return [self.student(x, training=training)]

    def _variables_to_train(self):
        return self.student.trainable_variables

    def _term_weights(self) -> dict:
        return {"student_loss": self.alpha, "distillation_loss": 1.0 - self.alpha}

    def _loss_terms(self, y, student_outputs, teacher_outputs) -> dict:
        """Unweighted per-example loss terms, each of shape ``(batch,)``."""
        s, t = student_outputs[0], teacher_outputs[0]
        if y is None:
            raise ValueError("Distiller needs labels: call fit/evaluate with (x, y) or (x, y, sample_weight).")
        student = _to_per_example(self._student_loss_fn(y, s), "student_loss_fn")
        if self._distillation_loss_fn is None:
            distill = soft_target_loss(t, s, self.temperature)
        else:
            t_probs = tf.nn.softmax(tf.cast(t, s.dtype) / self.temperature, axis=-1)
            s_probs = tf.nn.softmax(s / self.temperature, axis=-1)
            distill = (self.temperature ** 2) * _to_per_example(
                self._distillation_loss_fn(t_probs, s_probs), "distillation_loss_fn")
        return {"student_loss": student, "distillation_loss": distill}

    def _weighted_terms(self, y, student_outputs, teacher_outputs, sample_weight) -> dict:
        terms = self._loss_terms(y, student_outputs, teacher_outputs)
        dtype = student_outputs[0].dtype
        if sample_weight is not None:
            sample_weight = tf.reshape(tf.cast(sample_weight, dtype), [-1])
            terms = {k: tf.cast(v, dtype) * sample_weight for k, v in terms.items()}
        weights = self._term_weights()
        terms["loss"] = tf.add_n([weights[k] * tf.cast(v, dtype) for k, v in terms.items()])
        return terms

    @staticmethod
    def _global_batch_size(local_batch_size, dtype):
        n = tf.cast(local_batch_size, dtype)
        if tf.distribute.get_strategy().num_replicas_in_sync > 1:
            context = tf.distribute.get_replica_context()
            if context is not None:
                n = context.all_reduce(tf.distribute.ReduceOp.SUM, n)
        return n

    def _regularization(self, dtype):
        losses = self.student.losses
        return tf.cast(tf.add_n(losses), dtype) if losses else None

    def _update_trackers(self, terms, regularization):
        total = terms["loss"] if regularization is None else terms["loss"] + regularization
        by_name = {"loss": total, **{k: v for k, v in terms.items() if k != "loss"}}
        for tracker in self._trackers():
            tracker.update_state(by_name[tracker.name])

    def _results(self):
        return {m.name: m.result() for m in self.metrics}

    def _targets(self, x, y):
        """Labels and the teacher's outputs: cached logits fed with the labels (see :meth:`fit`), or the teacher run now."""
        if getattr(self, "_cached_targets", False):
            y, logits = y
            return y, [tf.stop_gradient(logits)]
        return y, self._teacher_outputs(x)

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        y, teacher_outputs = self._targets(x, y)  # once per batch, outside the tape
        with tf.GradientTape() as tape:
            student_outputs = self._student_outputs(x, training=True)
            dtype = student_outputs[0].dtype
            terms = self._weighted_terms(y, student_outputs, teacher_outputs, sample_weight)
            n = self._global_batch_size(tf.shape(terms["loss"])[0], dtype)
            loss = tf.reduce_sum(terms["loss"]) / n
            regularization = self._regularization(dtype)
            if regularization is not None:
                # Gradients are summed over replicas; each contributes its share.
                loss += regularization / tf.distribute.get_strategy().num_replicas_in_sync
        self.optimizer.minimize(loss, self._variables_to_train(), tape=tape)
        self._update_trackers(terms, regularization)
        self.compiled_metrics.update_state(y, student_outputs[0], sample_weight)
        return self._results()

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        y, teacher_outputs = self._targets(x, y)
        student_outputs = self._student_outputs(x, training=False)
        terms = self._weighted_terms(y, student_outputs, teacher_outputs, sample_weight)
        self._update_trackers(terms, self._regularization(student_outputs[0].dtype))
        self.compiled_metrics.update_state(y, student_outputs[0], sample_weight)
        return self._results()
