#!/bin/bash
# One device call that checks a build end to end and times it (docs/gpu-notes.md): cuda-check
# (conformance incl. the fp8 family, the fixture models in bf16, fp8 and through NCCL with a
# communicator of one), eval-demo (bf16, fp8, --gpus 0), bench bf16 against fp8 (Mixtral-8x7B on 8
# layers, Mistral-7B) at batch 1 and 64 and a 2048-token prefill; with .device/base/run.tar.xz
# (an earlier build, tools/device/pack.sh), the same bf16 benches with it, in the same call.
# Run with carry [".device/run"] (and ".device/base"); the logs come back as $OUT/logs.tar.gz.
# SKIP="bf16 kl nccl sweep 8x22b" (any of them) leaves those parts out.
cd "$(dirname "$0")/../.."   # repository root
R=$PWD
mkdir -p /tmp/b && tar xJf .device/run/run.tar.xz -C /tmp/b
export LD_LIBRARY_PATH=/tmp/b/lib MIXTRAL_KERNEL_CACHE=/tmp/kc MIXTRAL_CHAT_DEMO_DIR=$R/models/chloe-tiny NCCL_NVLS_ENABLE=0
B=/tmp/b/mixtral-chat
L=$OUT/logs; mkdir -p $L
t() { local name=$1 lim=$2; shift 2; local s=$(date +%s); stdbuf -oL timeout $lim "$@" > $L/$name.log 2>&1; echo "[rc=$?, $(( $(date +%s)-s )) s] $*" | tee -a $L/$name.log; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee $L/gpu.txt
NCCL=$(ls /opt/torch/.venv/lib/python3.12/site-packages/nvidia/*/lib/libnccl.so.2 2>/dev/null | head -1)
[ -n "$NCCL" ] && export MIXTRAL_LIBNCCL=$NCCL
t cuda-check 90 /tmp/b/cuda-check --models Tests/ModelTests/Fixtures --real-shapes
grep -E "FAIL|checks passed" $L/cuda-check.log | head -40
t eval-demo 15 $B eval-demo --device cuda
t eval-demo-nccl 15 $B eval-demo --device cuda --gpus 0
t eval-demo-fp8 15 $B eval-demo --device cuda --quantize fp8
grep -h -E "^(total|overall)|[0-9]+/180" $L/eval-demo*.log
bench() { # name binary args…
    local name=$1 bin=$2; shift 2
    t bench-$name-mixtral 45 $bin bench --device cuda --preset mixtral-8x7b --layers 8 --batch 1,64 --prompt-len 1024 --gen-len 16 "$@"
    t bench-$name-mixtral-prefill 30 $bin bench --device cuda --preset mixtral-8x7b --layers 8 --batch 1 --prompt-len 2048 --gen-len 4 "$@"
    t bench-$name-mistral 40 $bin bench --device cuda --preset mistral-7b --batch 1,64 --prompt-len 1024 --gen-len 16 "$@"
}
skip() { [[ " $SKIP " == *" $1 "* ]]; }
skip bf16 || bench bf16 $B
bench fp8 $B --quantize fp8
skip nccl || t bench-nccl1-mixtral 45 $B bench --device cuda --gpus 0 --preset mixtral-8x7b --layers 8 --batch 1,64 --prompt-len 1024 --gen-len 16
if ! skip kl; then
    t kl-demo 90 $B compare-quantization --device cuda --tokens 256
    t kl-mixtral 90 $B compare-quantization --device cuda --preset mixtral-8x7b --layers 4 --prompts 8 --prompt-len 512 --tokens 256
    t kl-mistral 90 $B compare-quantization --device cuda --preset mistral-7b --layers 8 --prompts 8 --prompt-len 512 --tokens 256
    MIXTRAL_FP8_TENSOR_CORES=0 t kl-mistral-f32act 120 $B compare-quantization --device cuda --preset mistral-7b --layers 8 --prompts 8 --prompt-len 512 --tokens 256
    grep -H "prompts," $L/kl-*.log
fi
if ! skip sweep; then   # e4m3 decode: tensor-core GEMVs against the SIMT ones, and their blocks-per-SM target
    for p in "mistral-7b" "mixtral-8x7b --layers 8"; do
        n=${p%% *}
        MIXTRAL_FP8_DECODE_TENSOR_CORES=0 t bench-fp8simt-$n-decode 30 $B bench --device cuda --preset $p --quantize fp8 --batch 1,4 --prompt-len 128 --gen-len 16
        t bench-fp8-$n-decode 30 $B bench --device cuda --preset $p --quantize fp8 --batch 1,4 --prompt-len 128 --gen-len 16
        for b in $TCBLOCKS; do   # e.g. TCBLOCKS="2 8" (default target 4)
            MIXTRAL_E4M3_GEMV_BLOCKS_PER_SM=$b t bench-fp8-$n-tcblocks$b 30 $B bench --device cuda --preset $p --quantize fp8 --batch 1,4 --prompt-len 128 --gen-len 16
        done
    done
fi
if [ -f .device/base/run.tar.xz ]; then
    mkdir -p /tmp/base && tar xJf .device/base/run.tar.xz -C /tmp/base
    ( export LD_LIBRARY_PATH=/tmp/base/lib; bench base /tmp/base/mixtral-chat )
fi
for f in $L/bench-*.log; do echo "== $(basename $f)"; grep -E "^(device|preset|batch|  )" $f | grep -v loading | cut -c1-190; done
# Mixtral-8x22B, all 56 layers, in FP8 on one GPU (281 GB of random bf16 made and quantized on the host while loading).
# --gpu-memory-fraction 0.98: with 0.9 the weights leave no room for KV (8 GiB free after them).
if ! skip 8x22b; then
    t bench-fp8-mixtral-8x22b 280 $B bench --device cuda --preset mixtral-8x22b --quantize fp8 --gpu-memory-fraction 0.98 --batch 1,16 --prompt-len 256 --gen-len 8
    grep -E "^(device|preset|batch|  )" $L/bench-fp8-mixtral-8x22b.log | grep -v loading | cut -c1-190
fi
tar czf $OUT/logs.tar.gz -C $OUT logs && rm -rf $L
