#!/bin/bash
# Per-kernel time and DRAM traffic of decode steps (Nsight Compute, each kernel alone: graphs and
# PDL off), for the FP8 decode work (docs/fp8.md): median time, bytes and bandwidth per kernel
# name over a short bench on 2 layers. Run with carry [".device/run"]; tables in $OUT/decode-*.txt.
# CASES="name|bench args;…" overrides the default cases.
cd "$(dirname "$0")/../.."
mkdir -p /tmp/b && tar xJf .device/run/run.tar.xz -C /tmp/b
export LD_LIBRARY_PATH=/tmp/b/lib MIXTRAL_KERNEL_CACHE=/tmp/kc MIXTRAL_CUDA_GRAPHS=0 MIXTRAL_PDL=0
NCU=$(command -v ncu || ls /usr/local/cuda*/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
echo "ncu: ${NCU:-none}"; [ -z "$NCU" ] && exit 0
CASES=${CASES:-"mistral-fp8-b1|--preset mistral-7b --quantize fp8 --batch 1;mistral-fp8-b4|--preset mistral-7b --quantize fp8 --batch 4;mistral-bf16-b4|--preset mistral-7b --batch 4;mixtral-fp8-b1|--preset mixtral-8x7b --quantize fp8 --batch 1;mixtral-fp8-b4|--preset mixtral-8x7b --quantize fp8 --batch 4"}
IFS=';' read -ra list <<< "$CASES"
for c in "${list[@]}"; do
    name=${c%%|*}; args=${c#*|}
    timeout 120 $NCU --kernel-name regex:'^(gemv|moe|attention|rope|rmsnorm|sample|embed|add_f32|swiglu|convert|fp8|quantize|gather)' \
        --launch-skip 40 --launch-count 120 --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum --csv --print-units base \
        /tmp/b/mixtral-chat bench --device cuda --layers 2 --prompt-len 16 --gen-len 12 $args > $OUT/ncu-$name.csv 2>&1
    echo "[$name rc=$?]"
    python3 - "$OUT/ncu-$name.csv" > $OUT/decode-$name.txt <<'PY'
import csv, sys, statistics, collections
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
head = rows[0]; rows = rows[1:]
ki, mi, vi = head.index("Kernel Name"), head.index("Metric Name"), head.index("Metric Value")
ii = head.index("ID")
per = collections.defaultdict(dict)
for r in rows:
    per[(r[ii], r[ki])][r[mi]] = float(r[vi].replace(",", ""))
by = collections.defaultdict(list)
for (i, k), m in per.items(): by[k].append(m)
print(f"{'kernel':42} {'n':>4} {'us':>8} {'MB':>8} {'GB/s':>7}")
tot = 0
for k, ms in sorted(by.items(), key=lambda kv: -statistics.median(m['gpu__time_duration.sum'] for m in kv[1]) * len(kv[1])):
    t = statistics.median(m['gpu__time_duration.sum'] for m in ms) / 1e3
    b = statistics.median(m['dram__bytes_read.sum'] + m['dram__bytes_write.sum'] for m in ms) / 1e6
    tot += t * len(ms)
    print(f"{k[:42]:42} {len(ms):4} {t:8.2f} {b:8.2f} {b / t * 1e3 if t else 0:7.0f}")
print(f"total {tot:.1f} us over the {sum(len(v) for v in by.values())} kernels")
PY
    cat $OUT/decode-$name.txt
done
