"""Every public function, given wrong types, out-of-range values, empties and broken files, raises kcompress's own
TypeError / ValueError naming the argument (or a documented error), never a raw TensorFlow / numpy /
flatbuffers traceback; and it does so before any work."""

import numpy as np
import pytest
import user_models as um

import kcompress as kc
from kcompress import pipeline as kp

keras = kc.keras
tf = kc._keras.tf  # noqa: SLF001 - the shim's TensorFlow, for tf.data inputs


def _dataset(n_train, n_test):
    rng = np.random.default_rng(0)
    return kc.data.Dataset("tiny", rng.random((n_train, 28, 28, 1), np.float32), rng.integers(0, 10, n_train),
                           rng.random((n_test, 28, 28, 1), np.float32), rng.integers(0, 10, n_test), 10, "memory")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad")
    model = kc.models.get("tiny_cnn")
    flat = kc.export.to_tflite(model, verbose=False)
    text_npz = tmp / "text" / "mnist.npz"
    text_npz.parent.mkdir()
    text_npz.write_text("x_train,y_train\n1,2\n")
    truncated_npz = tmp / "trunc" / "mnist.npz"
    truncated_npz.parent.mkdir()
    np.savez(tmp / "whole.npz", x_train=np.zeros((2, 28, 28), np.uint8), y_train=np.zeros(2, np.int64),
             x_test=np.zeros((2, 28, 28), np.uint8), y_test=np.zeros(2, np.int64))
    truncated_npz.write_bytes((tmp / "whole.npz").read_bytes()[:300])
    blocker = tmp / "a_file"
    blocker.write_text("x")
    garbled = bytearray(flat)
    garbled[8:200] = np.random.default_rng(0).integers(0, 256, 192, dtype=np.uint8).tobytes()
    pruned = kc.pruning.prune(model, kc.pruning.ConstantSparsity(0.5, begin_step=0))
    kc.models.compile_classifier(pruned)
    return {
        "tmp": tmp, "model": model, "flat": flat, "truncated": flat[: len(flat) // 2], "garbled": bytes(garbled),
        "ds": _dataset(64, 32), "empty": _dataset(0, 0), "text_npz": text_npz, "truncated_npz": truncated_npz,
        "blocker": blocker, "pruned": pruned, "sched": kc.pruning.ConstantSparsity(0.5),
    }


CASES = {
    # data
    "load: unknown name": (lambda e: kc.data.load("imagenet"), ValueError, r"name must be one of \["),
    "load: name not a str": (lambda e: kc.data.load(5), ValueError, r"name must be one of .* got 5"),
    "load: text file named mnist.npz": (
        lambda e: kc.data.load("mnist", data_dir=e["text_npz"].parent, use_tfds=False), ValueError,
        r"mnist.npz is not a readable .npz archive \(not a zip file.*np.savez"),
    "load: truncated archive": (
        lambda e: kc.data.load("mnist", data_dir=e["truncated_npz"].parent, use_tfds=False), ValueError,
        r"mnist.npz is not .*(archive|readable)"),
    "load: data_dir is a file": (lambda e: kc.data.load("mnist", data_dir=e["blocker"]), kc.data.DataNotFoundError,
                                 r"data_dir '.*a_file' is not a folder"),
    "representative: n=0": (lambda e: e["ds"].representative(0), ValueError, r"n must be an int in \[1, 64\], got 0"),
    "representative: empty dataset": (lambda e: e["empty"].representative(1), ValueError, r"n must be an int in \[1, 0\]"),
    "take: train too large": (lambda e: e["ds"].take(train=65), ValueError, r"train must be an int in \[1, 64\] or None"),
    # models
    "get: unknown model": (lambda e: kc.models.get("resnet152"), ValueError, r"resnet152"),
    "compile_classifier: not a model": (lambda e: kc.models.compile_classifier("lenet5"), TypeError,
                                        r"model must be a tf_keras.Model, got builtins.str"),
    "compile_classifier: learning_rate": (lambda e: kc.models.compile_classifier(e["model"], -1), ValueError,
                                          r"learning_rate must be a finite number > 0, got -1"),
    "fit: dataset": (lambda e: kc.models.fit(e["model"], (1, 2), epochs=1), TypeError, r"dataset must be a kcompress"),
    "fit: epochs": (lambda e: kc.models.fit(e["model"], e["ds"], epochs=0), ValueError, r"epochs must be an int >= 1"),
    "fit: empty dataset": (lambda e: kc.models.fit(e["model"], e["empty"], epochs=1), ValueError,
                           r"dataset 'tiny' has an empty training split"),
    # pruning
    "prune: schedule": (lambda e: kc.pruning.prune(e["model"], 0.5), TypeError, r"schedule must be a pruning schedule"),
    "prune: not a model": (lambda e: kc.pruning.prune("m", e["sched"]), TypeError, r"model must be a tf_keras.Model"),
    "prune: block_size": (lambda e: kc.pruning.prune(e["model"], e["sched"], block_size=(0, 2)), ValueError,
                          r"block_size must be two positive ints"),
    "prune: block_size on convs": (lambda e: kc.pruning.prune(e["model"], e["sched"], block_size=(2, 2)), ValueError,
                                   r"block_size=\(2, 2\) .*\(Conv2D, 4-D kernel\)"),
    "prune: unknown layer": (lambda e: kc.pruning.prune(e["model"], e["sched"], layers=["nope"]), ValueError,
                             r"layers names 'nope', which is not a layer of the model; its layers are \["),
    "prune: m_by_n": (lambda e: kc.pruning.prune(e["model"], e["sched"], m_by_n=(4, 2)), ValueError,
                      r"m_by_n must be \(m, n\) with 0 < m < n"),
    "prune: subclassed": (lambda e: kc.pruning.prune(um.subclassed(0), e["sched"]), ValueError,
                          r"model is a subclassed model \(SubclassedNet\)"),
    "ConstantSparsity: 1.5": (lambda e: kc.pruning.ConstantSparsity(1.5), ValueError, r"sparsity"),
    "fit without pruning callbacks": (
        lambda e: e["pruned"].fit(e["ds"].x_train, e["ds"].y_train, epochs=1, verbose=0), ValueError,
        r"holds pruning wrappers, so fit needs callbacks=kcompress.pruning.callbacks\(\)"),
    "distill a pruned student without pruning callbacks": (
        lambda e: _compiled_distiller(e).fit(e["ds"].x_train, e["ds"].y_train, epochs=1, verbose=0), ValueError,
        r"UpdatePruningStep"),
    "strip: not a model": (lambda e: kc.pruning.strip(None), TypeError, r"model must be a tf_keras.Model"),
    "sparsity: not a model": (lambda e: kc.pruning.sparsity(3), TypeError, r"model must be a tf_keras.Model"),
    "callbacks: log_dir": (lambda e: kc.pruning.callbacks(log_dir=3), TypeError, r"log_dir must be None or a folder"),
    # quantization
    "quantize_aware: preserve_sparsity": (lambda e: kc.quantization.quantize_aware(e["model"], preserve_sparsity="y"),
                                          TypeError, r"preserve_sparsity must be None, True or False"),
    "quantize_aware: layers as an int": (lambda e: kc.quantization.quantize_aware(e["model"], layers=3),
                                         TypeError, r"layers must hold layer names \(str\), the model's layers or layer classes, got 3"),
    "quantize_aware: unknown layer": (lambda e: kc.quantization.quantize_aware(e["model"], layers=["nope"]),
                                      ValueError, r"layers names 'nope', which is not a layer of the model"),
    "quantize_aware: pruning wrappers": (lambda e: kc.quantization.quantize_aware(e["pruned"]), ValueError,
                                         r"still holds pruning wrappers; call kcompress.pruning.strip"),
    "quantize_aware: subclassed": (lambda e: kc.quantization.quantize_aware(um.subclassed(0)), ValueError,
                                   r"SubclassedNet is subclassed"),
    "kernel_sparsity: not a model": (lambda e: kc.quantization.kernel_sparsity([]), TypeError, r"model must be"),
    "quantize_scope: not a dict": (lambda e: kc.quantization.quantize_scope([1]), TypeError,
                                   r"custom_objects\[0\] must be a dict"),
    # export
    "to_tflite: mode": (lambda e: kc.export.to_tflite(e["model"], "int4"), ValueError, r"mode must be one of"),
    "to_tflite: int8 without data": (lambda e: kc.export.to_tflite(e["model"], "int8"), ValueError,
                                     r"mode='int8' needs representative_data"),
    "to_tflite: empty array": (
        lambda e: kc.export.to_tflite(e["model"], "int8", representative_data=np.zeros((0, 28, 28, 1), np.float32)),
        ValueError, r"representative_data is empty"),
    "to_tflite: empty tf.data.Dataset": (
        lambda e: kc.export.to_tflite(e["model"], "int8", representative_data=tf.data.Dataset.from_tensor_slices(
            np.zeros((0, 28, 28, 1), np.float32)).batch(8)), ValueError, r"representative_data is empty"),
    "to_tflite: empty kcompress Dataset": (
        lambda e: kc.export.to_tflite(e["model"], "int8", representative_data=e["empty"]), ValueError,
        r"empty training split"),
    "to_tflite: integer data": (
        lambda e: kc.export.to_tflite(e["model"], "int8", representative_data=np.zeros((4, 28, 28, 1), np.uint8)),
        TypeError, r"representative_data item 0 has dtype uint8"),
    "to_tflite: wrong shape": (
        lambda e: kc.export.to_tflite(e["model"], "int8", representative_data=np.zeros((4, 32, 32, 3), np.float32)),
        ValueError, r"representative_data item 0 has shape \(4, 32, 32, 3\)"),
    "to_tflite: sparse": (lambda e: kc.export.to_tflite(e["model"], sparse="yes"), TypeError, r"sparse must be True or False"),
    "to_tflite: not a model": (lambda e: kc.export.to_tflite(b"model"), TypeError, r"model must be a tf_keras.Model"),
    "to_tflite: unbuilt subclassed": (lambda e: kc.export.to_tflite(um.subclassed(0, build=False)), ValueError,
                                      r"has never been called"),
    "save: a folder": (lambda e: kc.export.save(e["flat"], e["tmp"]), ValueError, r"is a folder; pass a file path"),
    "save: not bytes": (lambda e: kc.export.save("model", e["tmp"] / "m.tflite"), TypeError,
                        r"flatbuffer must be the bytes of a .tflite flatbuffer, got str"),
    "save: not a flatbuffer": (lambda e: kc.export.save(b"\x00" * 64, e["tmp"] / "m.tflite"), ValueError,
                               r"not a TFLite flatbuffer"),
    "save: truncated flatbuffer": (lambda e: kc.export.save(e["truncated"], e["tmp"] / "m.tflite"), ValueError,
                                   r"damaged TFLite flatbuffer .*LiteRT's verifier rejects it"),
    "save: folder under a file": (lambda e: kc.export.save(e["flat"], e["blocker"] / "m.tflite"), ValueError,
                                  r"cannot create the folder"),
    "write_atomic: path type": (lambda e: kc.export.write_atomic(3, b"x"), TypeError, r"path must be a file path"),
    "describe: truncated": (lambda e: kc.export.describe(e["truncated"]), ValueError, r"damaged TFLite flatbuffer"),
    "describe: garbled": (lambda e: kc.export.describe(e["garbled"]), ValueError, r"damaged TFLite flatbuffer"),
    "estimate_arena: truncated": (lambda e: kc.export.estimate_arena(e["truncated"]), ValueError, r"damaged"),
    "to_micro: garbled": (lambda e: kc.export.to_micro(e["garbled"], e["tmp"] / "m"), ValueError, r"damaged"),
    "to_c_array: truncated": (lambda e: kc.export.to_c_array(e["truncated"], e["tmp"] / "m"), ValueError, r"damaged"),
    "measure_arena: not bytes": (lambda e: kc.export.measure_arena([1, 2]), TypeError, r"flatbuffer must be the bytes"),
    "run_micro: arena_size": (lambda e: kc.export.run_micro(e["flat"], e["ds"].x_test[:1], arena_size="big"),
                              TypeError, r"arena_size must be an int >= 1024 or None, got 'big'"),
    # evaluation
    "evaluate: dataset": (lambda e: kc.evaluation.evaluate(e["flat"], "mnist"), TypeError, r"dataset must be a kcompress"),
    "evaluate: empty dataset": (lambda e: kc.evaluation.evaluate(e["flat"], e["empty"]), ValueError,
                                r"dataset 'tiny' has an empty test split"),
    "evaluate: empty dataset (keras)": (lambda e: kc.evaluation.evaluate(e["model"], e["empty"]), ValueError,
                                        r"empty test split"),
    "evaluate: max_samples": (lambda e: kc.evaluation.evaluate(e["flat"], e["ds"], max_samples=0), ValueError,
                              r"max_samples must be an int >= 1 or None, got 0"),
    "evaluate: latency_runs": (lambda e: kc.evaluation.evaluate(e["flat"], e["ds"], latency_runs=0), ValueError,
                               r"latency_runs must be an int >= 1"),
    "evaluate: truncated flatbuffer": (lambda e: kc.evaluation.evaluate(e["truncated"], e["ds"]), ValueError, r"damaged"),
    "evaluate: not a model": (lambda e: kc.evaluation.evaluate("model.tflite", e["ds"]), TypeError,
                              r"model_or_flatbuffer must be a tf_keras.Model"),
    "agreement: truncated flatbuffer": (lambda e: kc.evaluation.agreement(e["model"], e["truncated"], e["ds"]),
                                        ValueError, r"damaged"),
    "robustness: empty dataset": (lambda e: kc.evaluation.robustness(e["flat"], e["empty"]), ValueError, r"empty test"),
    "make_interpreter: num_threads": (lambda e: kc.evaluation.make_interpreter(e["flat"], num_threads=0), ValueError,
                                      r"num_threads must be an int >= 1"),
    "make_interpreter: op_resolver": (lambda e: kc.evaluation.make_interpreter(e["flat"], op_resolver="gpu"), ValueError,
                                      r"op_resolver must be one of"),
    "predict: wrong shape": (lambda e: kc.evaluation.predict(e["flat"], np.zeros((2, 32, 32, 3), np.float32)),
                             ValueError, r"x must have shape \(n, 28, 28, 1\), got \(2, 32, 32, 3\)"),
    "keras_macs: not a model": (lambda e: kc.evaluation.keras_macs(e["flat"]), TypeError, r"model must be a tf_keras"),
    "gzip_size: not bytes": (lambda e: kc.evaluation.gzip_size("abc"), TypeError, r"data must be bytes"),
    # distillation
    "Distiller: same model": (lambda e: kc.distillation.Distiller(student=e["model"], teacher=e["model"]), ValueError,
                              r"student and teacher must be different models"),
    "Distiller: not a model": (lambda e: kc.distillation.Distiller(student="s", teacher=e["model"]), TypeError,
                               r"student must be a tf_keras.Model"),
    "Distiller: softmax student": (lambda e: kc.distillation.Distiller(student=um.softmax_model(0), teacher=e["model"]),
                                   ValueError, r"ends with a softmax"),
    "Distiller.compile: alpha": (lambda e: kc.distillation.Distiller(student=kc.models.get("tiny_cnn"),
                                                                     teacher=e["model"]).compile(alpha=2), ValueError,
                                 r"alpha must be a finite number in \[0, 1\]"),
    "Distiller.save: .h5": (lambda e: kc.distillation.Distiller(student=kc.models.get("tiny_cnn"), teacher=e["model"]
                                                                ).save(e["tmp"] / "d.h5"), ValueError,
                            r"a Distiller saves as .keras or a SavedModel folder"),
    # clustering
    "cluster: 300 clusters": (lambda e: kc.clustering.cluster(e["model"], clusters=300), ValueError,
                              r"clusters must be in \[2, 256\]"),
    "cluster: float clusters": (lambda e: kc.clustering.cluster(e["model"], clusters=2.5), TypeError,
                                r"clusters must be an int"),
    "cluster: init": (lambda e: kc.clustering.cluster(e["model"], init="best"), ValueError, r"init must be one of"),
    # factorization
    "low_rank: no rank": (lambda e: kc.factorization.low_rank(e["model"]), ValueError, r"rank|energy|param_ratio"),
    # pipeline
    "Cluster stage: 300 clusters": (lambda e: kp.Cluster(clusters=300), ValueError, r"clusters must be in \[2, 256\]"),
    "Cluster stage: dict value": (lambda e: kp.Cluster(clusters={"conv1": 1}), ValueError,
                                  r"clusters\['conv1'\] must be in \[2, 256\]"),
    "Prune stage: sparsity": (lambda e: kp.Prune(sparsity=1.5), ValueError, r"sparsity"),
    "Export stage: mode": (lambda e: kp.Export(mode="int4"), ValueError, r"mode must be one of"),
    "Train stage: epochs": (lambda e: kp.Train(epochs=0), ValueError, r"epochs must be an int >= 1, got 0"),
    "Pipeline: no stages": (lambda e: kp.Pipeline([]), ValueError, r"stages must hold at least one stage"),
    "Pipeline: stages type": (lambda e: kp.Pipeline("prune"), TypeError, r"stages must be a list of Stage"),
    "stage_from_config: unknown": (lambda e: kp.stage_from_config({"stage": "nope"}), ValueError, r"stage must be one of"),
    "Pipeline.load: extension": (lambda e: kp.Pipeline.load(e["tmp"] / "recipe.txt"), ValueError,
                                 r"path must end with .json, .yaml or .yml"),
    "Pipeline.load: missing file": (lambda e: kp.Pipeline.load(e["tmp"] / "missing.yaml"), ValueError,
                                    r"recipe file '.*missing.yaml' does not exist"),
    "Pipeline.run: output_dir under a file": (
        lambda e: kp.Pipeline([kp.Train(epochs=5)]).run(e["ds"], model=e["model"], output_dir=e["blocker"] / "runs"),
        ValueError, r"output_dir '.*a_file/runs' cannot be written"),
    "Pipeline.run: dataset": (lambda e: kp.Pipeline([kp.Train()]).run("mnist", model=e["model"]), TypeError,
                              r"dataset must be a kcompress.data.Dataset"),
    "Pipeline.run: no model": (lambda e: kp.Pipeline([kp.Train()]).run(e["ds"]), ValueError, r"model is required"),
}


def _compiled_distiller(env):
    d = kc.distillation.Distiller(student=env["pruned"], teacher=kc.models.get("lenet5"))
    d.compile()
    return d


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_gives_a_clear_kcompress_error(env, case):
    call, error, match = CASES[case]
    with pytest.raises(error, match=match) as info:
        call(env)
    # kcompress's own message, not a library's exception type leaking through.
    assert type(info.value).__module__.split(".")[0] in ("builtins", "kcompress"), type(info.value)
