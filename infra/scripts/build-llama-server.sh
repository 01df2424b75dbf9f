#!/usr/bin/env bash
# Builds llama.cpp's OpenAI-compatible `llama-server` (the tests' real inference server) from the llama.cpp sources
# vendored in the llama-cpp-python sdist docflow already pins, and installs it as DEST. Only the llama-server target
# and what it links are compiled (no examples, tests or other tools), statically, for this machine's CPU, on every
# core. The binary is kept under ~/.cache/docflow keyed by version and CPU, so the next clone on this machine copies
# it instead of compiling again.
# Usage: build-llama-server.sh LLAMA_CPP_PYTHON_VERSION DEST
set -euo pipefail

version=$1
dest=$2
# GGML_NATIVE code runs only on CPUs with the same instruction sets: they are part of the key.
cpu=$( { uname -m; grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || true; } | sha256sum | cut -c1-12)
# "no-amx": llama.cpp's AMX kernels crashed the first decode of a Q4_K_M model on a CPU with AMX (a segfault in
# ggml_backend_amx_mul_mat, ggml-org/llama.cpp#20824): -U__AMX_INT8__ leaves them out (the Makefile does the same).
cached=${XDG_CACHE_HOME:-$HOME/.cache}/docflow/llama-server/$version-$cpu-no-amx/llama-server

if [[ ! -x "$cached" ]]; then
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    echo "building llama-server (llama.cpp of llama-cpp-python $version) on $(nproc) core(s)"
    started=$SECONDS
    pip=(python3 -m pip)
    if ! python3 -m pip --version >/dev/null 2>&1; then  # Debian's python3 comes without pip
        python3 -m venv "$work/pip"
        pip=("$work/pip/bin/python" -m pip)
    fi
    "${pip[@]}" download -q --no-deps --no-binary :all: "llama-cpp-python==$version" -d "$work" 2>&1 |
        { grep -v 'is ignored: it is neither a file nor a directory' || true; }
    tar -xzf "$work"/llama_cpp_python-"$version".tar.gz -C "$work" --wildcards '*/vendor/llama.cpp/*'
    src=$work/llama_cpp_python-$version/vendor/llama.cpp
    # LLAMA_BUILD_TOOLS/SERVER only declare the tools' targets; `--target llama-server` builds just that one.
    cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=ON \
        -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_TESTS=OFF \
        -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON \
        -DCMAKE_C_FLAGS=-U__AMX_INT8__ -DCMAKE_CXX_FLAGS=-U__AMX_INT8__ \
        >"$work/configure.log" 2>&1 || { cat "$work/configure.log" >&2; exit 1; }
    cmake --build "$work/build" --target llama-server -j"$(nproc)" >"$work/build.log" 2>&1 ||
        { tail -50 "$work/build.log" >&2; exit 1; }
    mkdir -p "$(dirname "$cached")"
    # Copied under a temporary name, then renamed: two builds at once never leave a half-written binary.
    cp "$work/build/bin/llama-server" "$cached.$$"
    mv -f "$cached.$$" "$cached"
    echo "built llama-server in $((SECONDS - started)) s: $cached"
fi
mkdir -p "$(dirname "$dest")"
cp "$cached" "$dest.$$"
mv -f "$dest.$$" "$dest"
