#!/bin/bash
# The first device call after session 6 (nothing of it ran yet): conformance (incl. fp8 and the NCCL group of one), eval-demo (bf16, fp8,
# NCCL), bench bf16 vs fp8 at batch 1 and 64 (Mixtral-8x7B, Mistral-7B), NCCL overhead at 1 GPU.
cd "$(dirname "$0")/../.."   # repository root; the tarball is .device/run/run.tar.xz (git-ignored)
R=$PWD
mkdir -p /tmp/b && tar xJf .device/run/run.tar.xz -C /tmp/b
export LD_LIBRARY_PATH=/tmp/b/lib MIXTRAL_KERNEL_CACHE=/tmp/kc MIXTRAL_CHAT_DEMO_DIR=$R/models/chloe-tiny NCCL_NVLS_ENABLE=0
B=/tmp/b/mixtral-chat
t() { local name=$1 lim=$2; shift 2; local s=$(date +%s); stdbuf -oL timeout $lim "$@" > $OUT/$name.log 2>&1; echo "[rc=$?, $(( $(date +%s)-s )) s] $*" | tee -a $OUT/$name.log; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee $OUT/gpu.txt
ls /opt/torch/.venv/lib/python3.12/site-packages/nvidia/ 2>&1 | tr '\n' ' ' > $OUT/nvidia-wheels.txt
NCCL=$(ls /opt/torch/.venv/lib/python3.12/site-packages/nvidia/*/lib/libnccl.so.2 2>/dev/null | head -1)
[ -n "$NCCL" ] && export MIXTRAL_LIBNCCL=$NCCL
echo "nccl: $NCCL" | tee -a $OUT/gpu.txt
t cuda-check 60 /tmp/b/cuda-check --models Tests/ModelTests/Fixtures --real-shapes
grep -E "FAIL|checks passed|==" $OUT/cuda-check.log | head -60
t eval-demo 15 $B eval-demo --device cuda
t eval-demo-nccl 15 $B eval-demo --device cuda --gpus 0
t eval-demo-fp8 15 $B eval-demo --device cuda --quantize fp8
tail -n 2 $OUT/eval-demo*.log
for f in $OUT/eval-demo*.log; do :; done
t bench-mixtral-bf16 40 $B bench --device cuda --preset mixtral-8x7b --layers 8 --batch 1,64 --prompt-len 1024 --gen-len 16
t bench-mixtral-fp8 40 $B bench --device cuda --preset mixtral-8x7b --layers 8 --quantize fp8 --batch 1,64 --prompt-len 1024 --gen-len 16
t bench-mistral-bf16 35 $B bench --device cuda --preset mistral-7b --batch 1,64 --prompt-len 1024 --gen-len 16
t bench-mistral-fp8 35 $B bench --device cuda --preset mistral-7b --quantize fp8 --batch 1,64 --prompt-len 1024 --gen-len 16
t bench-mistral-nccl 25 $B bench --device cuda --gpus 0 --preset mistral-7b --batch 1,64 --prompt-len 512 --gen-len 16

for f in $OUT/bench-*.log; do echo "== $f"; grep -v "loading weights" $f | tail -n 14; done
