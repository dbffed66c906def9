#!/bin/bash
# Packs the normal release build for a device call: mixtral-chat and cuda-check, stripped, with the
# Swift runtime libraries they link (ldd), as .device/run/run.tar.xz (git-ignored, ~22 MB), which
# tools/device/first-call.sh unpacks on the GPU machine (run with carry [".device/run"]).
set -euo pipefail
cd "$(dirname "$0")/../.."
P=$(mktemp -d)
mkdir -p "$P/lib" .device/run
strip -o "$P/mixtral-chat" .build/release/mixtral-chat
strip -o "$P/cuda-check" .build/release/cuda-check
for lib in $(ldd .build/release/mixtral-chat .build/release/cuda-check | awk '/\/opt\/swift/ {print $3}' | sort -u); do
    strip -o "$P/lib/$(basename "$lib")" "$lib"
done
tar cJf .device/run/run.tar.xz -C "$P" .
rm -rf "$P"
ls -la .device/run/run.tar.xz
