import re
import shutil
import subprocess

import pytest

import kcompress as kc

CXX = shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")

MAIN = r"""
#include <cstdint>
#include <cstdio>
#include <cstring>
#include "model_data.h"
int main() {
  if (g_model_len != EXPECTED_LEN) return 1;
  if (std::memcmp(g_model + 4, "TFL3", 4) != 0) return 2;
  if (reinterpret_cast<std::uintptr_t>(g_model) % 16 != 0) return 3;
  unsigned long sum = 0;
  for (unsigned int i = 0; i < g_model_len; ++i) sum += g_model[i];
  std::printf("%lu %.9g %d\n", sum, g_model_input_scale, g_model_input_zero_point);
  return 0;
}
"""


@pytest.fixture(scope="module")
def int8_flat(trained_lenet, mnist_small):
    return kc.export.to_tflite(trained_lenet, "int8", representative_data=mnist_small.representative(50), verbose=False)


def test_header_and_source_content(int8_flat, tmp_path):
    header, source = kc.export.to_c_array(int8_flat, tmp_path / "model_data", name="g_model")
    h, cc = open(header).read(), open(source).read()
    info = kc.export.describe(int8_flat)
    assert "extern const unsigned char g_model[];" in h and "extern const unsigned int g_model_len;" in h
    assert f"constexpr int g_model_input_zero_point = {info.inputs[0].zero_point};" in h
    assert f"g_model_output_scale = {info.outputs[0].scale!r}f;" in h
    assert "CONV_2D, FULLY_CONNECTED, MAX_POOL_2D, RESHAPE" in h
    assert "alignas(16) const unsigned char g_model[] = {" in cc
    assert f"const unsigned int g_model_len = {len(int8_flat)};" in cc
    body = cc.split("{", 1)[1].split("};", 1)[0]
    assert bytes(int(b, 16) for b in re.findall(r"0x([0-9a-f]{2})", body)) == int8_flat


@pytest.mark.skipif(CXX is None, reason="no C++ compiler on this machine")
def test_compiles_links_and_reads_back(int8_flat, tmp_path):
    kc.export.to_c_array(int8_flat, tmp_path / "model_data", name="g_model")
    (tmp_path / "main.cc").write_text(MAIN)
    exe = tmp_path / "check"
    build = subprocess.run(
        [CXX, "-std=c++17", "-Wall", "-Werror", f"-DEXPECTED_LEN={len(int8_flat)}u", "-I", str(tmp_path),
         str(tmp_path / "main.cc"), str(tmp_path / "model_data.cc"), "-o", str(exe)],
        capture_output=True, text=True, timeout=120,
    )
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.returncode
    checksum, scale, zero_point = run.stdout.split()
    info = kc.export.describe(int8_flat)
    assert int(checksum) == sum(int8_flat)
    assert abs(float(scale) - info.inputs[0].scale) < 1e-9 and int(zero_point) == info.inputs[0].zero_point


@pytest.mark.parametrize("name", ["1model", "g-model", "", None])
def test_rejects_bad_identifier(int8_flat, tmp_path, name):
    with pytest.raises(ValueError, match="name must be a C identifier"):
        kc.export.to_c_array(int8_flat, tmp_path / "m", name=name)


def test_rejects_non_flatbuffer(tmp_path):
    with pytest.raises(ValueError, match="not a TFLite flatbuffer"):
        kc.export.to_c_array(b"\x00" * 32, tmp_path / "m")
