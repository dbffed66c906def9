#!/bin/sh
# Builds a static, stand-alone cpu-bench binary (no Swift runtime needed where it runs) from the
# Tensors and CPUBackend sources compiled as one module.
# Usage: tools/cpu-bench/build.sh [output path, default .build/cpu-bench]
set -e
cd "$(dirname "$0")/../.."
out="${1:-.build/cpu-bench}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for f in Sources/Tensors/*.swift Sources/CPUBackend/*.swift; do
    sed 's/^import Tensors$//' "$f" > "$work/$(basename "$(dirname "$f")")-$(basename "$f")"
done
mkdir -p "$(dirname "$out")"
swiftc -O -Ounchecked -wmo -target-cpu haswell -static-stdlib -module-name CPUBench \
    "$work"/*.swift tools/cpu-bench/main.swift tools/cpu-bench/Decode.swift -o "$out"
echo "built $out"
