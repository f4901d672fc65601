"""``low_rank``: split Dense and Conv2D layers into two thinner layers by truncated SVD."""

from __future__ import annotations

import copy as _copy
import dataclasses
import math
from collections.abc import Mapping

import numpy as np
from absl import logging

from kcompress._keras import check_model, keras
from kcompress.evaluation.metrics import keras_macs, keras_params
from kcompress.validation import resolve_layers

_SUFFIXES = ("_svd_u", "_svd_v")


@dataclasses.dataclass(frozen=True)
class LowRankResult:
    """What :func:`low_rank` built and what it saved.

    Attributes:
        model: the factorized tf_keras model (plain layers, ready to compile and fine-tune).
        ranks: rank chosen for each factorized layer, by original layer name.
        energy: fraction of the squared singular values kept, per factorized layer.
        errors: relative Frobenius error ``||W - U V|| / ||W||`` per factorized layer.
        skipped: layers that were candidates but kept whole, with the reason.
        params_before, params_after: parameters of the input and of the result.
        macs_before, macs_after: multiply-accumulates of one inference.
    """

    model: object
    ranks: dict
    energy: dict
    errors: dict
    skipped: dict
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int

    @property
    def params_ratio(self) -> float:
        """params_after / params_before."""
        return self.params_after / self.params_before

    @property
    def macs_ratio(self) -> float:
        """macs_after / macs_before."""
        return self.macs_after / self.macs_before if self.macs_before else float("nan")


def _is_candidate(layer) -> bool:
    # Exact types: Conv2DTranspose subclasses Conv2D but factorizes differently.
    if type(layer) is keras.layers.Dense:
        return True
    return type(layer) is keras.layers.Conv2D and (layer.groups or 1) == 1 and layer.data_format == "channels_last"


def _matrix(layer) -> np.ndarray:
    """The kernel as a (fan_in, units) matrix."""
    kernel = layer.kernel.numpy()
    return kernel.reshape(-1, kernel.shape[-1])


def _split_params(layer, rank: int) -> int:
    m, n = _matrix(layer).shape
    return rank * (m + n) + (n if layer.use_bias else 0)


def _whole_params(layer) -> int:
    m, n = _matrix(layer).shape
    return m * n + (n if layer.use_bias else 0)


def _check_layers(model, layers):
    return resolve_layers(model, layers, accept=_is_candidate,
                          what="Dense and Conv2D (groups=1, channels_last) layers")


def _check_rank(rank, layer):
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)):
        raise TypeError(f"rank must be a positive int (or a dict of them by layer name), got {rank!r}.")
    full = min(_matrix(layer).shape)
    if not 1 <= rank <= full:
        raise ValueError(
            f"rank {rank!r} for layer {layer.name!r} is outside [1, {full}]: its kernel reshapes to a "
            f"{_matrix(layer).shape[0]} x {_matrix(layer).shape[1]} matrix, whose rank is at most {full}."
        )
    return int(rank)


def _rank_for_energy(s: np.ndarray, energy: float) -> int:
    sq = s.astype(np.float64) ** 2
    total = sq.sum()
    if total == 0:
        return 1
    kept = np.cumsum(sq) / total
    # The smallest r whose kept energy reaches the target (tolerating float round-off).
    return int(min(len(s), np.searchsorted(kept, energy - 1e-12) + 1))


def _ranks_for_param_ratio(model, chosen, param_ratio, svals):
    """Largest common fraction f of each layer's full rank that brings the model under the budget."""
    budget = param_ratio * model.count_params()
    others = model.count_params() - sum(_whole_params(layer) for layer in chosen)

    def ranks_at(f):
        return {layer.name: max(1, int(math.floor(f * len(svals[layer.name])))) for layer in chosen}

    def total(ranks):
        return others + sum(min(_split_params(layer, ranks[layer.name]), _whole_params(layer)) for layer in chosen)

    lo, hi = 0.0, 1.0
    if total(ranks_at(lo)) > budget:
        raise ValueError(
            f"param_ratio {param_ratio!r} cannot be reached by factorizing {[layer.name for layer in chosen]}: "
            f"even at rank 1 the model keeps {total(ranks_at(0.0)):,} of {model.count_params():,} parameters."
        )
    for _ in range(50):
        mid = (lo + hi) / 2
        if total(ranks_at(mid)) <= budget:
            lo = mid
        else:
            hi = mid
    return ranks_at(lo)


def _replace_refs(obj, old, new):
    """Replaces references to layer ``old`` in a Functional config's inbound nodes / output list."""
    if isinstance(obj, list):
        if len(obj) >= 3 and obj[0] == old and isinstance(obj[1], int) and isinstance(obj[2], int):
            return [new, *[_replace_refs(x, old, new) for x in obj[1:]]]
        return [_replace_refs(x, old, new) for x in obj]
    if isinstance(obj, dict):
        return {k: _replace_refs(v, old, new) for k, v in obj.items()}
    return obj


def _split_configs(layer, rank):
    """Configs of the two layers replacing ``layer`` at ``rank``."""
    cfg = layer.get_config()
    name = layer.name
    if isinstance(layer, keras.layers.Dense):
        first = {"name": name + _SUFFIXES[0], "units": rank, "use_bias": False, "activation": "linear",
                 "trainable": cfg["trainable"], "dtype": cfg["dtype"]}
        second = dict(cfg, name=name + _SUFFIXES[1])
        second.pop("activity_regularizer", None)
        return ("Dense", first), ("Dense", second)
    first = {
        "name": name + _SUFFIXES[0], "filters": rank, "kernel_size": cfg["kernel_size"], "strides": cfg["strides"],
        "padding": cfg["padding"], "dilation_rate": cfg["dilation_rate"], "use_bias": False,
        "activation": "linear", "trainable": cfg["trainable"], "dtype": cfg["dtype"],
    }
    second = dict(cfg, name=name + _SUFFIXES[1], kernel_size=(1, 1), strides=(1, 1), padding="valid",
                  dilation_rate=(1, 1))
    second.pop("activity_regularizer", None)
    return ("Conv2D", first), ("Conv2D", second)


def _entry(class_name, config, like):
    entry = {"class_name": class_name, "config": config, "name": config["name"]}
    if "module" in like:
        entry["module"] = like["module"]
        entry["registered_name"] = None
    return entry


def _rebuild(model, ranks):
    config = _copy.deepcopy(model.get_config())
    is_sequential = isinstance(model, keras.Sequential)
    new_layers = []
    for entry in config["layers"]:
        name = entry["config"].get("name")
        if name not in ranks:
            new_layers.append(entry)
            continue
        (c1, cfg1), (c2, cfg2) = _split_configs(model.get_layer(name), ranks[name])
        first, second = _entry(c1, cfg1, entry), _entry(c2, cfg2, entry)
        if not is_sequential:
            first["inbound_nodes"] = entry["inbound_nodes"]
            second["inbound_nodes"] = [[[first["name"], 0, 0, {}]]]
        else:
            first.pop("name"), second.pop("name")
        new_layers += [first, second]
    config["layers"] = new_layers
    if is_sequential:
        return keras.Sequential.from_config(config)
    for old in ranks:
        new = old + _SUFFIXES[1]
        for entry in config["layers"]:
            if entry["name"] not in (old + _SUFFIXES[0], new):
                entry["inbound_nodes"] = _replace_refs(entry["inbound_nodes"], old, new)
        config["output_layers"] = _replace_refs(config["output_layers"], old, new)
    return keras.Model.from_config(config)


def low_rank(model, rank=None, energy=None, layers=None, param_ratio=None) -> LowRankResult:
    """Splits Dense and Conv2D layers of a copy of ``model`` into two layers by truncated SVD.

    A Dense kernel ``W`` (fan_in x units) becomes ``Dense(r, use_bias=False)``
    followed by ``Dense(units)`` (with the original bias and activation), whose
    kernels are ``U_r sqrt(S_r)`` and ``sqrt(S_r) V_r^T``. A k x k Conv2D with
    ``c_in`` inputs becomes a k x k conv with ``r`` filters (same strides, padding
    and dilation, no bias, linear) followed by a 1x1 conv with the original
    filters, bias and activation; its kernel is factorized as a
    (k*k*c_in) x filters matrix. By Eckart-Young the product is the best rank-r
    approximation: its Frobenius error is the root of the discarded squared
    singular values. Layers whose split would not have fewer parameters are kept
    whole (listed in ``skipped``). The input model is not changed.

    Choose the rank in exactly one way:

    * ``rank``: an int for every chosen layer, or a dict ``{layer_name: rank}``
      (only those layers are split);
    * ``energy``: in (0, 1], the smallest rank whose squared singular values
      reach this fraction of the total, per layer;
    * ``param_ratio``: in (0, 1], the fraction of the whole model's parameters
      to keep; every chosen layer gets the same fraction of its full rank, the
      largest that meets the budget.

    Args:
        model: a Sequential or Functional tf_keras or Keras 3 model (top-level layers are split).
        rank: see above.
        energy: see above.
        layers: the layers to split: a name, a layer class, or a list of them (Dense / Conv2D); None for all.
        param_ratio: see above.

    Returns:
        A :class:`LowRankResult` with the new ``model`` (uncompiled) and the ranks,
        kept energy, reconstruction errors, params and MACs before and after.

    Raises:
        TypeError: not a tf_keras model, or a non-int rank / non-str layer name.
        ValueError: none or several of rank/energy/param_ratio, a rank outside
            [1, the layer's full rank], energy or param_ratio outside (0, 1], an
            unknown or unsupported layer, a shared layer, or a subclassed model.

    Example:
        >>> r = low_rank(model, param_ratio=0.5, layers=["fc1", "fc2"])
        >>> r.params_after / r.params_before, r.ranks
        >>> kc.models.compile_classifier(r.model, 1e-3); kc.models.fit(r.model, ds, epochs=3)
    """
    model = check_model(model)
    if not (isinstance(model, keras.Sequential) or getattr(model, "_is_graph_network", False)):
        raise ValueError(f"model is a subclassed model ({type(model).__name__}); low_rank needs a Sequential or Functional model.")
    given = [n for n, v in (("rank", rank), ("energy", energy), ("param_ratio", param_ratio)) if v is not None]
    if len(given) != 1:
        raise ValueError(f"Pass exactly one of rank, energy or param_ratio; got {given or 'none'}.")
    for argname, value in (("energy", energy), ("param_ratio", param_ratio)):
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{argname} must be a float in (0, 1], got {value!r}.")
            if not 0.0 < value <= 1.0:
                raise ValueError(f"{argname} must be in (0, 1], got {value!r}.")
    if isinstance(rank, Mapping):
        if layers is not None:
            raise ValueError("Pass layers or a rank dict naming the layers, not both.")
        layers = list(rank)
    chosen, explicit = _check_layers(model, layers)
    for layer in chosen:
        if len(layer.inbound_nodes) > 1:
            raise ValueError(f"layer {layer.name!r} is shared (called {len(layer.inbound_nodes)} times); low_rank cannot split it.")
    if not chosen:
        raise ValueError(f"model {model.name!r} has no Dense or Conv2D layer to factorize.")

    svd = {layer.name: np.linalg.svd(_matrix(layer).astype(np.float64), full_matrices=False) for layer in chosen}
    svals = {name: s for name, (_, s, _) in svd.items()}
    if rank is not None:
        ranks = {layer.name: _check_rank(rank[layer.name] if isinstance(rank, Mapping) else rank, layer)
                 for layer in chosen}
    elif energy is not None:
        ranks = {layer.name: _rank_for_energy(svals[layer.name], float(energy)) for layer in chosen}
    else:
        ranks = _ranks_for_param_ratio(model, chosen, float(param_ratio), svals)

    skipped = {}
    for layer in chosen:
        if _split_params(layer, ranks[layer.name]) >= _whole_params(layer):
            skipped[layer.name] = (f"rank {ranks[layer.name]} would need {_split_params(layer, ranks[layer.name]):,} "
                                   f"parameters, not fewer than {_whole_params(layer):,}")
            log = logging.warning if explicit else logging.info
            log("low_rank keeps %r whole: %s.", layer.name, skipped[layer.name])
            del ranks[layer.name]
    if not ranks:
        logging.warning("low_rank splits no layer of %r: none gets fewer parameters (%s).", model.name, skipped)

    new = _rebuild(model, ranks)
    replaced = set(ranks)
    for layer in model.layers:
        if layer.name not in replaced and layer.weights:
            new.get_layer(layer.name).set_weights(layer.get_weights())
    kept_energy, errors = {}, {}
    for name, r in ranks.items():
        old = model.get_layer(name)
        u, s, vt = svd[name]
        root = np.sqrt(s[:r])
        a = (u[:, :r] * root).astype(np.float32)
        b = (root[:, None] * vt[:r]).astype(np.float32)
        first, second = new.get_layer(name + _SUFFIXES[0]), new.get_layer(name + _SUFFIXES[1])
        first.set_weights([a.reshape(first.kernel.shape)])
        second.set_weights([b.reshape(second.kernel.shape)] + ([old.bias.numpy()] if old.use_bias else []))
        sq = s.astype(np.float64) ** 2
        kept_energy[name] = float(sq[:r].sum() / sq.sum()) if sq.sum() else 1.0
        w = _matrix(old).astype(np.float64)
        norm = np.linalg.norm(w)
        errors[name] = float(np.linalg.norm(w - a.astype(np.float64) @ b) / norm) if norm else 0.0
    params_before, params_after = keras_params(model)[0], keras_params(new)[0]
    result = LowRankResult(
        model=new, ranks=ranks, energy=kept_energy, errors=errors, skipped=skipped,
        params_before=params_before, params_after=params_after,
        macs_before=keras_macs(model), macs_after=keras_macs(new),
    )
    logging.info("low_rank %s: ranks %s, params %d -> %d, MACs %d -> %d", model.name, ranks,
                 params_before, params_after, result.macs_before, result.macs_after)
    return result
