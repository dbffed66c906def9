#!/bin/bash
# Packs a normal release build for a device call: mixtral-chat and cuda-check, stripped, with the
# Swift runtime libraries they link (ldd), as OUT/run.tar.xz (~22 MB; OUT defaults to .device/run,
# git-ignored), which tools/device/verify.sh unpacks on the GPU machine (run with carry
# [".device/run"], plus ".device/base" for a baseline build packed with
#   tools/device/pack.sh /path/to/other/checkout/.build/release .device/base).
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${1:-.build/release}
OUTDIR=${2:-.device/run}
P=$(mktemp -d)
mkdir -p "$P/lib" "$OUTDIR"
strip -o "$P/mixtral-chat" "$BIN/mixtral-chat"
[ -x "$BIN/cuda-check" ] && strip -o "$P/cuda-check" "$BIN/cuda-check"
for lib in $(ldd "$BIN/mixtral-chat" $( [ -x "$BIN/cuda-check" ] && echo "$BIN/cuda-check") | awk '/\/opt\/swift/ {print $3}' | sort -u); do
    strip -o "$P/lib/$(basename "$lib")" "$lib"
done
tar cJf "$OUTDIR/run.tar.xz" -C "$P" .
rm -rf "$P"
ls -la "$OUTDIR/run.tar.xz"
