import shutil
import subprocess

import numpy as np
import pytest

import kcompress as kc

CXX = shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")

# The MicroMutableOpResolver methods of TFLite Micro (tensorflow/lite/micro/micro_mutable_op_resolver.h),
# declared in a stand-in header so the generated registration compiles only if its names exist.
TFLM_API = sorted(set(kc.export.TFLM_METHODS.values()) & {
    "AddAbs", "AddAdd", "AddAddN", "AddArgMax", "AddArgMin", "AddAveragePool2D", "AddBatchToSpaceNd", "AddCast",
    "AddCeil", "AddConcatenation", "AddConv2D", "AddCos", "AddCumSum", "AddDepthToSpace", "AddDepthwiseConv2D",
    "AddDequantize", "AddElu", "AddEqual", "AddExp", "AddExpandDims", "AddFill", "AddFloor", "AddFloorDiv",
    "AddFloorMod", "AddFullyConnected", "AddGather", "AddGatherNd", "AddGreater", "AddGreaterEqual",
    "AddHardSwish", "AddIf", "AddL2Normalization", "AddL2Pool2D", "AddLeakyRelu", "AddLess", "AddLessEqual",
    "AddLog", "AddLogicalAnd", "AddLogicalNot", "AddLogicalOr", "AddLogistic", "AddMaximum", "AddMaxPool2D",
    "AddMean", "AddMinimum", "AddMul", "AddNeg", "AddNotEqual", "AddPack", "AddPad", "AddPadV2", "AddPrelu",
    "AddQuantize", "AddReduceMax", "AddRelu", "AddRelu6", "AddReshape", "AddResizeBilinear",
    "AddResizeNearestNeighbor", "AddRound", "AddRsqrt", "AddShape", "AddSin", "AddSoftmax", "AddSpaceToBatchNd",
    "AddSpaceToDepth", "AddSplit", "AddSplitV", "AddSqueeze", "AddSqrt", "AddSquare", "AddStridedSlice",
    "AddSub", "AddSvdf", "AddTanh", "AddTransposeConv", "AddTranspose", "AddUnpack", "AddZerosLike",
})
STUB = "\n".join([
    "#pragma once",
    "enum TfLiteStatus { kTfLiteOk = 0, kTfLiteError = 1 };",
    "namespace tflite {",
    "template <unsigned int tOpCount> class MicroMutableOpResolver {",
    " public:",
    *[f"  TfLiteStatus {m}() {{ return ++count_ <= tOpCount ? kTfLiteOk : kTfLiteError; }}" for m in TFLM_API],
    "  unsigned int GetRegistrationLength() { return count_; }",
    " private:",
    "  unsigned int count_ = 0;",
    "};",
    "}  // namespace tflite",
    "",
])
MAIN = r"""
#include <cstdint>
#include <cstdio>
#include "model_data.h"
#include "model_data_resolver.h"
alignas(16) static std::uint8_t tensor_arena[g_model_arena_size];
int main() {
  tflite::MicroMutableOpResolver<g_model_op_count> resolver;
  if (g_model_register_ops(resolver) != kTfLiteOk) return 1;
  std::printf("%u %u %zu %u\n", resolver.GetRegistrationLength(), g_model_len, sizeof(tensor_arena),
              static_cast<unsigned>(g_model[4]));
  return 0;
}
"""


@pytest.fixture(scope="module")
def int8_flat(trained_lenet, mnist_small):
    return kc.export.to_tflite(trained_lenet, "int8", representative_data=mnist_small.representative(50), verbose=False)


def test_bundle_lists_ops_methods_and_writes_three_files(int8_flat, tmp_path):
    bundle = kc.export.to_micro(int8_flat, tmp_path / "model_data", name="g_model")
    assert bundle.ops == ("CONV_2D", "FULLY_CONNECTED", "MAX_POOL_2D", "RESHAPE")
    assert bundle.resolver_methods == ("AddConv2D", "AddFullyConnected", "AddMaxPool2D", "AddReshape")
    assert bundle.unsupported_ops == ()
    resolver = open(bundle.resolver_path).read()
    assert "constexpr unsigned int g_model_op_count = 4;" in resolver
    assert f"constexpr std::size_t g_model_arena_size = {bundle.arena_bytes};" in resolver
    assert bundle.resolver_snippet in resolver and "resolver.AddMaxPool2D()" in bundle.resolver_snippet
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model_data.cc", "model_data.h", "model_data_resolver.h"]


def test_arena_estimate_for_lenet5(int8_flat, trained_lenet):
    arena = kc.export.estimate_arena(int8_flat)
    # int8 activations: input 28*28*1, conv1 28*28*6 (the largest), pool1 14*14*6, ...
    assert arena.input_bytes == 784 and arena.largest_tensor_bytes == 4704 and arena.output_bytes == 10
    assert arena.arena_bytes >= arena.largest_tensor_bytes + arena.input_bytes
    # conv1's output and pool1's output live together: 4704 + 1176, 16-byte aligned (what TFLite
    # Micro's greedy planner reserves for this graph, measured with its RecordingMicroAllocator).
    assert arena.tensors_bytes == 5888
    assert 8_000 < arena.arena_bytes < 16_000
    float_arena = kc.export.estimate_arena(kc.export.to_tflite(trained_lenet, verbose=False))
    assert float_arena.tensors_bytes == 4 * 5880 and float_arena.arena_bytes > 2 * arena.arena_bytes


@pytest.mark.skipif(CXX is None, reason="no C++ compiler on this machine")
def test_bundle_compiles_against_the_resolver_api(int8_flat, tmp_path):
    bundle = kc.export.to_micro(int8_flat, tmp_path / "model_data", name="g_model")
    stub = tmp_path / "tensorflow" / "lite" / "micro" / "micro_mutable_op_resolver.h"
    stub.parent.mkdir(parents=True)
    stub.write_text(STUB)
    (tmp_path / "main.cc").write_text(MAIN)
    exe = tmp_path / "check"
    build = subprocess.run(
        [CXX, "-std=c++17", "-Wall", "-Werror", "-I", str(tmp_path), str(tmp_path / "main.cc"),
         str(tmp_path / "model_data.cc"), "-o", str(exe)],
        capture_output=True, text=True, timeout=120,
    )
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.returncode
    registered, length, arena, byte4 = map(int, run.stdout.split())
    assert registered == 4 and length == len(int8_flat) and arena == bundle.arena_bytes and byte4 == ord("T")


def test_ops_without_micro_kernels_are_refused(fresh_copy, tmp_path):
    model = fresh_copy()
    k = model.get_layer("fc1").kernel.numpy()
    k[np.abs(k) < np.quantile(np.abs(k), 0.9)] = 0
    model.get_layer("fc1").kernel.assign(k)
    flat = kc.export.to_tflite(model, "float32", sparse=True, verbose=False)  # adds DENSIFY
    with pytest.raises(ValueError, match=r"no kernel known to kcompress for \['DENSIFY'\].*pass strict=False"):
        kc.export.to_micro(flat, tmp_path / "m")
    assert not list(tmp_path.iterdir())
    bundle = kc.export.to_micro(flat, tmp_path / "m", strict=False)
    assert bundle.unsupported_ops == ("DENSIFY",)
    assert "// DENSIFY: no TFLite Micro kernel known" in open(bundle.resolver_path).read()


@pytest.mark.parametrize("kwargs, error, match", [
    ({"name": "2model"}, ValueError, "name must be a C identifier"),
    ({"strict": "yes"}, TypeError, "strict must be True or False, got 'yes'"),
])
def test_bad_arguments(int8_flat, tmp_path, kwargs, error, match):
    with pytest.raises(error, match=match):
        kc.export.to_micro(int8_flat, tmp_path / "m", **kwargs)


def test_rejects_non_flatbuffer(tmp_path):
    with pytest.raises(ValueError, match="not a TFLite flatbuffer"):
        kc.export.to_micro(b"\x00" * 32, tmp_path / "m")
    with pytest.raises(ValueError, match="not a TFLite flatbuffer"):
        kc.export.estimate_arena(b"\x00" * 32)


def test_estimate_covers_what_tflite_micro_allocates(int8_flat):
    """Runs in CI: the test extra installs the tflite-micro wheel."""
    measured = kc.export.measure_arena(int8_flat)
    estimate = kc.export.estimate_arena(int8_flat).arena_bytes
    assert measured <= estimate <= 1.25 * measured, (estimate, measured)
