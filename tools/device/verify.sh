#!/bin/bash
# One device call that checks a build end to end and times it (docs/gpu-notes.md): cuda-check
# (conformance incl. the fp8 family, the fixture models in bf16, fp8 and through NCCL with a
# communicator of one), eval-demo (bf16, fp8, --gpus 0), bench bf16 against fp8 (Mixtral-8x7B on 8
# layers, Mistral-7B) at batch 1 and 64 and a 2048-token prefill; with .device/base/run.tar.xz
# (an earlier build, tools/device/pack.sh), the same bf16 benches with it, in the same call.
# Run with carry [".device/run"] (and ".device/base"); logs go to $OUT.
cd "$(dirname "$0")/../.."   # repository root
R=$PWD
mkdir -p /tmp/b && tar xJf .device/run/run.tar.xz -C /tmp/b
export LD_LIBRARY_PATH=/tmp/b/lib MIXTRAL_KERNEL_CACHE=/tmp/kc MIXTRAL_CHAT_DEMO_DIR=$R/models/chloe-tiny NCCL_NVLS_ENABLE=0
B=/tmp/b/mixtral-chat
t() { local name=$1 lim=$2; shift 2; local s=$(date +%s); stdbuf -oL timeout $lim "$@" > $OUT/$name.log 2>&1; echo "[rc=$?, $(( $(date +%s)-s )) s] $*" | tee -a $OUT/$name.log; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee $OUT/gpu.txt
NCCL=$(ls /opt/torch/.venv/lib/python3.12/site-packages/nvidia/*/lib/libnccl.so.2 2>/dev/null | head -1)
[ -n "$NCCL" ] && export MIXTRAL_LIBNCCL=$NCCL
t cuda-check 90 /tmp/b/cuda-check --models Tests/ModelTests/Fixtures --real-shapes
grep -E "FAIL|checks passed" $OUT/cuda-check.log | head -40
t eval-demo 15 $B eval-demo --device cuda
t eval-demo-nccl 15 $B eval-demo --device cuda --gpus 0
t eval-demo-fp8 15 $B eval-demo --device cuda --quantize fp8
grep -h -E "^(total|overall)|[0-9]+/180" $OUT/eval-demo*.log
bench() { # name binary args…
    local name=$1 bin=$2; shift 2
    t bench-$name-mixtral 45 $bin bench --device cuda --preset mixtral-8x7b --layers 8 --batch 1,64 --prompt-len 1024 --gen-len 16 "$@"
    t bench-$name-mixtral-prefill 30 $bin bench --device cuda --preset mixtral-8x7b --layers 8 --batch 1 --prompt-len 2048 --gen-len 4 "$@"
    t bench-$name-mistral 40 $bin bench --device cuda --preset mistral-7b --batch 1,64 --prompt-len 1024 --gen-len 16 "$@"
}
bench bf16 $B
bench fp8 $B --quantize fp8
t bench-nccl1-mixtral 45 $B bench --device cuda --gpus 0 --preset mixtral-8x7b --layers 8 --batch 1,64 --prompt-len 1024 --gen-len 16
t kl-demo 90 $B compare-quantization --device cuda --tokens 256
t kl-mixtral 90 $B compare-quantization --device cuda --preset mixtral-8x7b --layers 4 --prompts 8 --prompt-len 512 --tokens 256
t kl-mistral 90 $B compare-quantization --device cuda --preset mistral-7b --layers 8 --prompts 8 --prompt-len 512 --tokens 256
tail -n 1 $OUT/kl-*.log
grep -h "prompts," $OUT/kl-*.log
if [ -f .device/base/run.tar.xz ]; then
    mkdir -p /tmp/base && tar xJf .device/base/run.tar.xz -C /tmp/base
    ( export LD_LIBRARY_PATH=/tmp/base/lib; bench base /tmp/base/mixtral-chat )
fi
for f in $OUT/bench-*.log; do echo "== $(basename $f)"; grep -E "^(device|preset|batch|  )" $f | grep -v loading | cut -c1-190; done
