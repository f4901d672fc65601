"""Reproduce Deep Compression (Han et al. 2016) on MNIST: prune, share weights, count Huffman-coded bytes.

    python experiments/deep_compression.py --output_dir=runs/deep_compression

For each model (LeNet-300-100 and LeNet-5 by default): train a baseline, prune
the fully connected layers (polynomial schedule, fine-tuned), cluster every
layer with sparsity preservation (32 shared values for Dense, 16 for Conv2D)
and fine-tune the centroids, then count the entropy-coded size
(``kc.evaluation.entropy_coded_size``: Huffman-coded cluster indices and
relative sparse indices plus codebooks) against the float32 weights. Also
product quantization of the pruned model (no fine-tuning) and, for LeNet-5,
low-rank factorization of the dense layers at half the parameters, fine-tuned.
Every variant is exported as a float32 flatbuffer (sparse encoding once pruned),
whose accuracy and robustness to noise are measured in LiteRT. All of it once
per --seeds (default 0); the tables show mean ± std over them. Writes
results.json, results.csv, report.md, flags.json, and the flatbuffers of seed N
into seedN/.
"""

from __future__ import annotations

import os
import time

from absl import app, flags, logging

import kcompress as kc
import kcompress.clustering
import kcompress.factorization  # noqa: F401  (until kcompress/__init__ imports them)
from kcompress.reporting import study

FLAGS = flags.FLAGS
_FLAG_NAMES: list[str] = []
# Han et al. 2016, Table 1: compression of the weights (float32 -> pruned, shared, Huffman-coded).
PUBLISHED = {"lenet300_100": 40.0, "lenet5": 39.0}
# Fully connected layers pruned per model (the paper prunes FC layers hardest; convs stay dense here).
PRUNE_LAYERS = {"lenet300_100": ["fc1", "fc2"], "lenet5": ["fc1", "fc2"]}


def _own_flags():
    flags.DEFINE_list("models", ["lenet300_100", "lenet5"], "Zoo models to compress.")
    flags.DEFINE_integer("epochs", 10, "Baseline training epochs.", lower_bound=1)
    flags.DEFINE_integer("prune_epochs", 8, "Pruning fine-tune epochs.", lower_bound=1)
    flags.DEFINE_integer("cluster_epochs", 4, "Clustering fine-tune epochs.", lower_bound=1)
    flags.DEFINE_integer("lowrank_epochs", 6, "Low-rank fine-tune epochs.", lower_bound=1)
    flags.DEFINE_float("sparsity_lenet300_100", 0.92, "Final sparsity of LeNet-300-100's fc1 and fc2.")
    flags.DEFINE_float("sparsity_lenet5", 0.95, "Final sparsity of LeNet-5's fc1 and fc2.")
    flags.DEFINE_integer("dense_clusters", 32, "Shared values per Dense layer (5-bit indices).", lower_bound=2)
    flags.DEFINE_integer("conv_clusters", 16, "Shared values per Conv2D layer (4-bit indices).", lower_bound=2)
    flags.DEFINE_integer("pq_subvector", 4, "Product quantization sub-vector length.", lower_bound=1)
    flags.DEFINE_integer("pq_codebook", 256, "Product quantization code-words per layer.", lower_bound=2)
    flags.DEFINE_float("lowrank_param_ratio", 0.5, "Low-rank: fraction of LeNet-5's parameters kept.")
    flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate of the baseline, pruning and low-rank.")
    flags.DEFINE_float("cluster_learning_rate", 1e-4, "Adam learning rate of clustering fine-tuning.")


def define_flags():
    """Defines this script's flags (a function so tests can import and reuse them).

    ``--robust_samples`` (the old name) is still read as ``--robustness_samples``.
    """
    _FLAG_NAMES[:] = study.define_flags(
        _own_flags, output_dir="runs/deep_compression", omit=("model",), robustness_samples=2000,
        help_texts={"robustness_samples": "Test samples per robustness measurement."},
        aliases={"robust_samples": "robustness_samples"})
    flags.adopt_module_key_flags(study)  # --help lists the shared flags too


def _fit(model, ds, args, epochs, lr, callbacks=None, restore_best=False):
    kc.models.compile_classifier(model, lr)
    t0 = time.perf_counter()
    kc.models.fit(model, ds, epochs=epochs, batch_size=args["batch_size"], callbacks=callbacks,
                  restore_best=restore_best)
    return time.perf_counter() - t0


def _measure(name, variant, model, ds, out, args, sparse, entropy=None, extra=None):
    """Keras accuracy, float32 flatbuffer in LiteRT, entropy-coded size and robustness."""
    keras_acc = kc.evaluation.evaluate(model, ds, latency_runs=5)["accuracy"]
    flat = kc.export.to_tflite(model, "float32", sparse=sparse, verbose=False)
    kc.export.save(flat, os.path.join(out, f"{name}_{variant}.tflite"))
    r = kc.evaluation.evaluate(flat, ds, latency_runs=50)
    entropy = entropy if entropy is not None else kc.evaluation.entropy_coded_size(model).as_dict()
    robust = kc.evaluation.robustness(flat, ds, max_samples=args["robustness_samples"], seed=args["seed"])
    record = {"model": name, "variant": f"{name} {variant}", "keras_accuracy": keras_acc, **r, **entropy,
              **robust, "sparsity": kc.pruning.sparsity(model).prunable, **(extra or {})}
    logging.info("%s: %s", record["variant"], {k: record[k] for k in ("accuracy", "size_bytes", "entropy_bytes")})
    return record


def _one_model(name, ds, out, args) -> list[dict]:
    seed = args["seed"]
    kc.keras.utils.set_random_seed(seed)
    base = kc.models.get(name, ds.input_shape, ds.num_classes, seed=seed)
    seconds = _fit(base, ds, args, args["epochs"], args["learning_rate"], restore_best=True)
    records = [_measure(name, "baseline", base, ds, out, args, sparse=False, extra={"train_seconds": seconds})]

    # 1. Prune the fully connected layers, fine-tune.
    target = args[f"sparsity_{name}"]
    spe = kc.pruning.steps_per_epoch(len(ds.x_train), args["batch_size"], validation_split=0.1)
    end = max(1, args["prune_epochs"] // 2)
    schedule = kc.pruning.PolynomialDecay.from_epochs(0.5, target, begin_epoch=0, end_epoch=end, steps_per_epoch=spe)
    kc.keras.utils.set_random_seed(seed)
    pruned = kc.pruning.prune(base, schedule, layers=PRUNE_LAYERS[name])
    seconds = _fit(pruned, ds, args, args["prune_epochs"], args["learning_rate"],
                   callbacks=kc.pruning.callbacks(per_layer=False))
    pruned = kc.pruning.strip(pruned)
    records.append(_measure(name, "pruned", pruned, ds, out, args, sparse=True,
                            extra={"train_seconds": seconds, "target_sparsity": target}))

    # 2. Share weights: cluster every layer, zeros preserved, fine-tune the centroids.
    clusters = {layer.name: args["conv_clusters"] if isinstance(layer, kc.keras.layers.Conv2D) else args["dense_clusters"]
                for layer in pruned.layers if isinstance(layer, (kc.keras.layers.Conv2D, kc.keras.layers.Dense))}
    kc.keras.utils.set_random_seed(seed)
    clustered = kc.clustering.cluster(pruned, clusters=clusters, preserve_sparsity=True)
    seconds = _fit(clustered, ds, args, args["cluster_epochs"], args["cluster_learning_rate"])
    shared = kc.clustering.strip(clustered)
    record = _measure(name, "pruned+clustered", shared, ds, out, args, sparse=True,
                      extra={"train_seconds": seconds, "published_ratio": PUBLISHED.get(name)})
    records.append(record)

    # 3. Product quantization of the pruned model (no fine-tuning).
    pq = kc.clustering.product_quantize(pruned, subvector=args["pq_subvector"], codebook_size=args["pq_codebook"],
                                        seed=seed)
    storage = pq.storage()
    pq_entropy = {"float32_bytes": storage.float32_bytes, "entropy_bytes": storage.entropy_bytes,
                  "entropy_ratio": storage.entropy_ratio, "pq_bytes": storage.total_bytes, "pq_ratio": storage.ratio}
    records.append(_measure(name, f"pruned+PQ d={args['pq_subvector']} k={args['pq_codebook']}",
                            kc.clustering.decode(pq), ds, out, args, sparse=True, entropy=pq_entropy))

    # 4. Low-rank factorization of the dense layers at a fraction of the parameters, fine-tuned.
    if name == "lenet5":
        lr = kc.factorization.low_rank(base, param_ratio=args["lowrank_param_ratio"], layers=["fc1", "fc2"])
        kc.keras.utils.set_random_seed(seed)
        seconds = _fit(lr.model, ds, args, args["lowrank_epochs"], args["learning_rate"], restore_best=True)
        records.append(_measure(name, "low-rank " + ",".join(f"{k}:{v}" for k, v in lr.ranks.items()), lr.model,
                                ds, out, args, sparse=False,
                                extra={"train_seconds": seconds, "params_ratio": lr.params_ratio}))

    ref = records[0]
    for r in records:
        r["accuracy_delta"] = 100.0 * (r["accuracy"] - ref["accuracy"])
        r["compression"] = ref["size_bytes"] / r["size_bytes"]
        r["gzip_compression"] = ref["size_bytes"] / r["gzip_bytes"]
    return records


def run(args: dict) -> list[dict]:
    """Runs every model and variant for every seed and writes the outputs; returns every seed's records."""
    unknown = [m for m in args["models"] if m not in PRUNE_LAYERS]
    if unknown:
        raise ValueError(f"--models must be among {sorted(PRUNE_LAYERS)}, got {unknown}.")
    with study.workspace(args) as out:
        records = study.records_over_seeds(
            args, lambda ds, a: [r for name in a["models"] for r in _one_model(name, ds, a["output_dir"], a)], out,
            name="deep compression")
        robust = [k for k in records[0] if k.startswith("robust_")]
        columns = ("variant", "keras_accuracy", "accuracy", "accuracy_delta", "sparsity", "params", "nonzero_params",
                   "float32_bytes", "size_bytes", "gzip_bytes", "entropy_bytes", "entropy_ratio", "published_ratio",
                   *robust)
        study.write_outputs(out, records, args, title=f"Deep Compression on {args['dataset']}", notes=_notes(args),
                            columns=columns)
        return records


def _notes(args) -> str:
    return (
        "Deep Compression accounting: 'float32_bytes' is every weight as a 32-bit float; 'entropy_bytes' is "
        "kc.evaluation.entropy_coded_size (per tensor the cheapest of raw float32, Huffman-coded values, or "
        "Huffman-coded values plus Huffman-coded relative indices with filler zeros; codebooks and Huffman tables "
        "counted) and 'entropy_ratio' their ratio; the published ratios are Han et al. 2016, Table 1 (LeNet-300-100 "
        "40x, LeNet-5 39x, Caffe models of 267K and 431K weights). For a baseline or pruned model the values are "
        "rounded to 256 levels for this count (lossy, not what 'accuracy' measured); clustered models are counted "
        "exactly. For PQ rows 'entropy_bytes' is the Huffman-coded 8-bit codes plus float32 codebooks and other "
        "weights. 'bytes' is the float32 flatbuffer (sparse encoding once pruned), 'accuracy' and robust_* are "
        "that flatbuffer in LiteRT (robust_*: first "
        f"{args['robustness_samples']} test images with seeded Gaussian noise of the given std, or salt-and-pepper "
        "on the given fraction of pixels, clipped to [0, 1]). Δ acc is against the model's baseline flatbuffer. "
        f"Pruning: fc1 and fc2 to the target sparsity over {max(1, args['prune_epochs'] // 2)} of "
        f"{args['prune_epochs']} epochs; clustering: {args['dense_clusters']} values per Dense, "
        f"{args['conv_clusters']} per Conv2D, zeros preserved, {args['cluster_epochs']} epochs at "
        f"{args['cluster_learning_rate']}. Flatbuffers of seed N: seedN/."
    )


def main(argv):
    del argv
    args = study.flag_values(_FLAG_NAMES)
    run(args)
    if not kc.models.is_chief(kc.models.get_strategy(args["strategy"])):
        return  # only the chief wrote the report
    with open(os.path.join(args["output_dir"], "report.md")) as f:
        print(f.read())


if __name__ == "__main__":
    define_flags()
    app.run(main)
