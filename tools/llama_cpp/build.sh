#!/usr/bin/env bash
# Builds the peer engine wick's LLM is compared with and checked against: llama.cpp as vendored
# in the llama-cpp-python 0.3.36 sdist (llama.cpp 0c1e570), from the sdist `make llama3-text`
# fetched and pinned. Only its command-line tools: llama-tokenize (the tokenizer tests) and
# llama-bench (tools/compare-llm). Release build for this machine's CPU (GGML_NATIVE, as a
# user of llama.cpp would build it), so the cache is named by the CPU's flags too (Makefile).
#
# Usage: build.sh LLAMA3_TEXT_DIR OUT_DIR   (OUT_DIR/bin gets the programs; needs cmake, g++)
set -euo pipefail
refs=$1 out=$2
sdist=$refs/llama_cpp_python-0.3.36.tar.gz
[ -f "$sdist" ] || { echo "build.sh: $sdist is missing: make llama3-text fetches it" >&2; exit 1; }
command -v cmake >/dev/null || { echo "build.sh: cmake is missing (apt-get install cmake)" >&2; exit 1; }
part=$out.part
rm -rf "$part"
mkdir -p "$part/src"
tar -xzf "$sdist" -C "$part/src" --strip-components=3 llama_cpp_python-0.3.36/vendor/llama.cpp
cmake -S "$part/src" -B "$part/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DBUILD_SHARED_LIBS=OFF \
  -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF >"$part/cmake.log" 2>&1 ||
  { tail -20 "$part/cmake.log" >&2; echo "build.sh: cmake could not configure llama.cpp (its log: $part/cmake.log)" >&2; exit 1; }
cmake --build "$part/build" --target llama-tokenize llama-bench -j "$(nproc)" >"$part/build.log" 2>&1 ||
  { grep -m 20 -E 'error|Error' "$part/build.log" >&2; echo "build.sh: building llama.cpp failed (its log: $part/build.log)" >&2; exit 1; }
mkdir -p "$part/bin"
cp "$part/build/bin/llama-tokenize" "$part/build/bin/llama-bench" "$part/bin/"
rm -rf "$part/src" "$part/build"
rm -rf "$out"
mv "$part" "$out"
echo "build.sh: $out/bin: $(ls "$out/bin" | xargs)"
