#!/usr/bin/env bash
# Builds the libFuzzer targets into .build-fuzz/ (git-ignored) with swiftc directly: SwiftPM
# would rebuild the whole package with the sanitizers. Each target is compiled *into* the module
# whose parser it drives (e.g. -module-name Checkpoints), so it can call the same internal entry
# points the package's loaders call; the modules it imports are built first as static libraries,
# with the same sanitizer flags so their code is instrumented too.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${FUZZ_OUT:-.build-fuzz}   # FUZZ_OUT: build elsewhere while a run uses .build-fuzz
mkdir -p "$OUT/modules"
FLAGS=(-sanitize=fuzzer,address -parse-as-library -O -g -swift-version 6)

# lib NAME: Sources/NAME as a static library plus its .swiftmodule.
lib() {
    local name=$1; shift
    echo "== lib $name"
    swiftc "${FLAGS[@]}" -module-name "$name" -I "$OUT/modules" "$@" \
        -emit-module -emit-module-path "$OUT/modules/$name.swiftmodule" \
        -emit-library -static -o "$OUT/lib$name.a" Sources/"$name"/*.swift
}

# target NAME MODULE FILE [LIBS...]: MODULE's sources + the target file as one fuzzer binary.
target() {
    local name=$1 module=$2 file=$3; shift 3
    local libs=()
    for l in "$@"; do libs+=("$OUT/lib$l.a"); done
    echo "== target $name (module $module)"
    swiftc "${FLAGS[@]}" -module-name "$module" -I "$OUT/modules" \
        Sources/"$module"/*.swift tools/fuzz/Targets/FuzzInput.swift "tools/fuzz/Targets/$file" \
        "${libs[@]}" -o "$OUT/$name" 2> >(grep -v "Cannot export local symbol '__asan" >&2)
}

# Usage: tools/fuzz/build.sh [TARGET...]   (default: every target)
want() { [ ${#ONLY[@]} -eq 0 ] || [[ " ${ONLY[*]} " == *" $1 "* ]]; }
ONLY=("$@")
lib Tensors
lib Tokenizers
want safetensors && target safetensors Checkpoints SafetensorsHeader.swift Tensors
want model-config && target model-config Checkpoints ModelConfigJSON.swift Tensors
want pth && target pth Checkpoints PyTorchZip.swift Tensors
want sentencepiece && target sentencepiece Tokenizers SentencePieceProto.swift
want chat && target chat Chat ChatRequestJSON.swift Tokenizers
echo "fuzz targets in $OUT/"
