#!/usr/bin/env bash
# Builds the peer engine wick's LLM is compared with and checked against: llama.cpp as vendored
# in the llama-cpp-python 0.3.36 sdist (llama.cpp 0c1e570), from the sdist `make llama3-text`
# fetched and pinned. Only its command-line tools: llama-tokenize (the tokenizer tests) and
# llama-bench (tools/compare-llm). Release build for this machine's CPU (as a user of llama.cpp
# would build it), so the cache is named by the CPU's flags too (Makefile). On x86-64 the
# vector extensions are named one by one from /proc/cpuinfo instead of GGML_NATIVE, to leave
# AMX out: its tiles need the kernel's permission, which sandboxed machines such as this
# project's CI refuse (llama-bench then dies in ggml_backend_amx_mul_mat), and wick has no AMX
# path, so the two engines are compared on the same vector units.
#
# Usage: build.sh LLAMA3_TEXT_DIR OUT_DIR   (OUT_DIR/bin gets the programs; needs cmake, g++)
set -euo pipefail
refs=$1 out=$2
sdist=$refs/llama_cpp_python-0.3.36.tar.gz
[ -f "$sdist" ] || { echo "build.sh: $sdist is missing: make llama3-text fetches it" >&2; exit 1; }
command -v cmake >/dev/null || { echo "build.sh: cmake is missing (apt-get install cmake)" >&2; exit 1; }
arch_flags=(-DGGML_NATIVE=ON)
if [ "$(uname -m)" = x86_64 ]; then
  flags=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
  has() { for f in "$@"; do [[ $flags == *" $f "* ]] || return 1; done; }
  onoff() { if has "$@"; then echo ON; else echo OFF; fi; }
  arch_flags=(-DGGML_NATIVE=OFF -DGGML_SSE42="$(onoff sse4_2)" -DGGML_AVX="$(onoff avx)" -DGGML_AVX2="$(onoff avx2)"
    -DGGML_FMA="$(onoff fma)" -DGGML_F16C="$(onoff f16c)" -DGGML_BMI2="$(onoff bmi2)" -DGGML_AVX_VNNI="$(onoff avx_vnni)"
    -DGGML_AVX512="$(onoff avx512f avx512cd avx512vl avx512dq avx512bw)" -DGGML_AVX512_VBMI="$(onoff avx512vbmi)"
    -DGGML_AVX512_VNNI="$(onoff avx512_vnni)" -DGGML_AVX512_BF16="$(onoff avx512_bf16)"
    -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF)
fi
part=$out.part
rm -rf "$part"
mkdir -p "$part/src"
tar -xzf "$sdist" -C "$part/src" --strip-components=3 llama_cpp_python-0.3.36/vendor/llama.cpp
cmake -S "$part/src" -B "$part/build" -DCMAKE_BUILD_TYPE=Release "${arch_flags[@]}" -DBUILD_SHARED_LIBS=OFF \
  -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF >"$part/cmake.log" 2>&1 ||
  { tail -20 "$part/cmake.log" >&2; echo "build.sh: cmake could not configure llama.cpp (its log: $part/cmake.log)" >&2; exit 1; }
cmake --build "$part/build" --target llama-tokenize llama-bench -j "$(nproc)" >"$part/build.log" 2>&1 ||
  { grep -m 20 -E 'error|Error' "$part/build.log" >&2; echo "build.sh: building llama.cpp failed (its log: $part/build.log)" >&2; exit 1; }
printf '%s\n' "${arch_flags[@]}" > "$part/cmake-flags.txt"
mkdir -p "$part/bin"
cp "$part/build/bin/llama-tokenize" "$part/build/bin/llama-bench" "$part/bin/"
rm -rf "$part/src" "$part/build"
rm -rf "$out"
mv "$part" "$out"
echo "build.sh: $out/bin: $(ls "$out/bin" | xargs)"
