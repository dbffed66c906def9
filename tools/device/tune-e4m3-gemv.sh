#!/bin/bash
# The tensor-core e4m3 GEMVs (gemv_e4m3.cu): cuda-check (NOCHECK=1 skips it), then batch-1 and
# batch-4 decode of Mistral-7B and Mixtral-8x7B (8 layers) for each variant in VARIANTS
# ("name|ENV=… ENV=…;…": load depths through MIXTRAL_NVRTC_OPTIONS, the blocks-per-SM target,
# SIMT with MIXTRAL_FP8_DECODE_TENSOR_CORES=0). Run with carry [".device/run"]; logs in $OUT.
cd "$(dirname "$0")/../.."
mkdir -p /tmp/b && tar xJf .device/run/run.tar.xz -C /tmp/b
export LD_LIBRARY_PATH=/tmp/b/lib MIXTRAL_KERNEL_CACHE=/tmp/kc
B=/tmp/b/mixtral-chat
[ -z "$NOCHECK" ] && { timeout 120 /tmp/b/cuda-check --models Tests/ModelTests/Fixtures --real-shapes > $OUT/cuda-check.log 2>&1; grep -E "FAIL|checks passed" $OUT/cuda-check.log | head -20; }
VARIANTS=${VARIANTS:-"default|;steps2|MIXTRAL_NVRTC_OPTIONS=-DE4M3_TC_STEPS=2 -DE4M3_TC_STEPS_PAIR=1;blocks8|MIXTRAL_E4M3_GEMV_BLOCKS_PER_SM=8;steps2-blocks8|MIXTRAL_NVRTC_OPTIONS=-DE4M3_TC_STEPS=2 -DE4M3_TC_STEPS_PAIR=1 MIXTRAL_E4M3_GEMV_BLOCKS_PER_SM=8"}
IFS=';' read -ra list <<< "$VARIANTS"
for p in "mistral-7b" "mixtral-8x7b --layers 8"; do
    for v in "${list[@]}"; do
        echo "== ${v%%|*} $p"
        env="${v#*|}"
        ( [ -n "$env" ] && while [[ $env =~ ^([A-Z0-9_]+)=(.*)$ ]]; do
              name=${BASH_REMATCH[1]}; rest=${BASH_REMATCH[2]}
              if [[ $rest =~ ^(.*)\ ([A-Z0-9_]+=.*)$ ]]; then export $name="${BASH_REMATCH[1]}"; env=${BASH_REMATCH[2]}; else export $name="$rest"; env=; fi
          done
          timeout 90 $B bench --device cuda --preset $p --quantize fp8 --batch ${BATCH:-1,4} --prompt-len 128 --gen-len 24 2>&1 | grep -E "decode step" )
    done
done
