"""One rule per argument: the checks kcompress's public functions share.

Every check names the argument, the value it got and what is allowed, and keeps
one convention: ``TypeError`` for a value of the wrong type (a string where a
number goes, a bool where an int goes), ``ValueError`` for a value of the right
type outside what is allowed (a negative epoch count, ``nan``, an unknown choice).
Each returns the value normalised (``int``, ``float``), so callers write
``epochs = check_int("epochs", epochs, minimum=1)``.

The same quantity gets the same limits everywhere; the shared ones are here too
(:func:`check_temperature`, :func:`check_fraction`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from kcompress._keras import all_layers

__all__ = ["check_bool", "check_choice", "check_fraction", "check_instance", "check_int", "check_number",
           "check_temperature", "resolve_layers"]


def _allowed_range(kind, minimum, maximum, low_open=False, high_open=False) -> str:
    minimum, maximum = _shown(minimum), _shown(maximum)
    if minimum is not None and maximum is not None:
        return f"{kind} in {'(' if low_open else '['}{minimum}, {maximum}{')' if high_open else ']'}"
    if minimum is not None:
        return f"{kind} {'>' if low_open else '>='} {minimum}"
    if maximum is not None:
        return f"{kind} {'<' if high_open else '<='} {maximum}"
    return kind


def _shown(limit):
    """A limit as messages show it: ints whole (``60000``, not ``6e+04``), floats short (``0.5``)."""
    if limit is None or isinstance(limit, (int, np.integer)):
        return limit
    return f"{limit:g}"


def check_int(name: str, value, minimum: int | None = None, maximum: int | None = None, allow_none: bool = False):
    """``value`` as an ``int`` within ``[minimum, maximum]`` (``None`` passes with ``allow_none``).

    Raises:
        TypeError: not an int (bools and floats included, even ``2.0``).
        ValueError: outside the range.
    """
    if allow_none and value is None:
        return None
    allowed = _allowed_range("an int", minimum, maximum) + (" or None" if allow_none else "")
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be {allowed}, got {value!r}.")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be {allowed}, got {value!r}.")
    return int(value)


def check_number(name: str, value, minimum: float | None = None, maximum: float | None = None, *,
                 low_open: bool = False, high_open: bool = False, allow_none: bool = False):
    """``value`` as a finite ``float`` within the range (open ends with ``low_open`` / ``high_open``).

    Raises:
        TypeError: not a real number (bools and strings included).
        ValueError: ``nan`` or infinite, or outside the range.
    """
    if allow_none and value is None:
        return None
    allowed = "a finite " + _allowed_range("number", minimum, maximum, low_open, high_open) + (
        " or None" if allow_none else "")
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be {allowed}, got {value!r}.")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be {allowed}, got {value!r}.")
    if minimum is not None and (value <= minimum if low_open else value < minimum):
        raise ValueError(f"{name} must be {allowed}, got {value!r}.")
    if maximum is not None and (value >= maximum if high_open else value > maximum):
        raise ValueError(f"{name} must be {allowed}, got {value!r}.")
    return value


def check_fraction(name: str, value, *, low_open: bool = False, high_open: bool = False, allow_none: bool = False):
    """A number in ``[0, 1]`` (ends open as asked): accuracies, ratios, sparsities, loss weights."""
    return check_number(name, value, 0.0, 1.0, low_open=low_open, high_open=high_open, allow_none=allow_none)


def check_temperature(value, name: str = "temperature") -> float:
    """A distillation softmax temperature: a finite number > 0 (the Distiller, the loss and the stage alike)."""
    return check_number(name, value, 0.0, low_open=True)


def check_bool(name: str, value) -> bool:
    """``value`` when it is a bool (numpy's too); 0 / 1 / strings are refused with ``TypeError``."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}.")
    return bool(value)


def check_choice(name: str, value, choices):
    """``value`` when it is one of ``choices``.

    Raises:
        TypeError: ``value`` is not of the choices' type (e.g. an int where names go).
        ValueError: another value of that type.
    """
    choices = tuple(choices)
    kinds = tuple({type(c) for c in choices})
    shown = ", ".join(repr(c) for c in choices)
    if kinds and not isinstance(value, kinds):
        raise TypeError(f"{name} must be one of {shown}, got {value!r}.")
    if value not in choices:
        raise ValueError(f"{name} must be one of {shown}, got {value!r}.")
    return value


def _is_layer_class(item) -> bool:
    return isinstance(item, type) and all(hasattr(item, a) for a in ("call", "build", "get_config"))


def resolve_layers(model, layers, accept=None, what: str = "", argname: str = "layers", nested: bool = False):
    """The layers of ``model`` that ``layers`` names, in model order: the one resolver of ``layers=``.

    Args:
        model: a Keras model.
        layers: ``None`` (every layer ``accept`` takes), or one item or a list of items, each a
            layer name, a layer class (every layer of that type ``accept`` takes) or one of the
            model's own layer objects.
        accept: ``fn(layer) -> bool``, the layers this caller can work on; ``None`` takes all.
        what: what ``accept`` takes, for the error message (e.g. ``"Dense and Conv2D layers"``).
        argname: the argument's name in messages.
        nested: also look inside models nested in ``model`` (a Sequential block in a Functional).

    Returns:
        ``(chosen layers, explicit)``: ``explicit`` is False when ``layers`` was ``None``.

    Raises:
        TypeError: an item that is neither a name, a layer class nor a layer.
        ValueError: an empty list, a name or layer that is not in the model, one that ``accept``
            refuses, or a class with no (acceptable) layer in the model.
    """
    accept = accept or (lambda layer: True)
    every = list(all_layers(model)) if nested else list(model.layers)
    by_name = {}
    for layer in every:
        by_name.setdefault(layer.name, layer)
    if layers is None:
        return [layer for layer in every if accept(layer)], False
    single = isinstance(layers, (str, type)) or any(layers is layer for layer in every) or not isinstance(layers, Iterable)
    items = [layers] if single else list(layers)
    if not items:
        raise ValueError(f"{argname} must name at least one layer, got {layers!r}; the model's layers are "
                         f"{sorted(by_name)}.")
    good = sorted(layer.name for layer in every if accept(layer))
    shown = good if len(good) <= 20 else good[:20] + ["..."]

    def refuse(layer, said):
        raise ValueError(f"{argname} names {said}, a {type(layer).__name__}; this takes {what or 'other layers'} only "
                         f"(here: {shown}).")

    picked = set()
    for item in items:
        if isinstance(item, str):
            if item not in by_name:
                raise ValueError(f"{argname} names {item!r}, which is not a layer of the model; its layers are "
                                 f"{sorted(by_name)}.")
            if not accept(by_name[item]):
                refuse(by_name[item], repr(item))
            picked.add(id(by_name[item]))
        elif isinstance(item, type):
            if not _is_layer_class(item):
                raise TypeError(f"{argname} must hold layer names (str), the model's layers or layer classes, "
                                f"got the class {item.__name__}.")
            found = [id(layer) for layer in every if isinstance(layer, item) and accept(layer)]
            if not found:
                raise ValueError(f"{argname} names the class {item.__name__}, but the model has no "
                                 f"{'such layer' if not what else item.__name__ + ' among its ' + what}.")
            picked.update(found)
        elif any(item is layer for layer in every):
            if not accept(item):
                refuse(item, f"the layer {item.name!r}")
            picked.add(id(item))
        elif hasattr(item, "name") and hasattr(item, "call"):
            raise ValueError(f"{argname} holds the layer {item.name!r}, which is not a layer of model {model.name!r} "
                             f"(another model's, or a copy); pass its name.")
        else:
            raise TypeError(f"{argname} must hold layer names (str), the model's layers or layer classes, got {item!r}.")
    return [layer for layer in every if id(layer) in picked], True


def check_instance(name: str, value, types, allowed: str, allow_none: bool = False):
    """``value`` when it is an instance of ``types`` (``None`` passes with ``allow_none``).

    Args:
        allowed: what the argument takes, for the message, e.g. ``"None or a Distill stage"``.

    Raises:
        TypeError: any other value; the message names ``name``, the value and ``allowed``.
    """
    if (allow_none and value is None) or isinstance(value, types):
        return value
    raise TypeError(f"{name} must be {allowed}, got {value!r}.")
