#!/bin/bash
# Per-kernel time and DRAM traffic of one prefill (Nsight Compute, each kernel alone: graphs and
# PDL off), for the FP8 prefill work (docs/fp8.md): every kernel of bench's first (warm-up)
# prefill chunk on 2 layers, in launch order and summed by name. Run with carry [".device/run"];
# tables in $OUT/prefill-*.txt. CASES="name|bench args;…" overrides the default cases.
cd "$(dirname "$0")/../.."
mkdir -p /tmp/b && tar xJf .device/run/run.tar.xz -C /tmp/b
export LD_LIBRARY_PATH=/tmp/b/lib MIXTRAL_KERNEL_CACHE=/tmp/kc MIXTRAL_CUDA_GRAPHS=0 MIXTRAL_PDL=0
NCU=$(command -v ncu || ls /usr/local/cuda*/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
echo "ncu: ${NCU:-none}"; [ -z "$NCU" ] && exit 0
CASES=${CASES:-"mixtral-fp8-2048|--preset mixtral-8x7b --quantize fp8 --prompt-len 2048;mistral-fp8-2048|--preset mistral-7b --quantize fp8 --prompt-len 2048"}
IFS=';' read -ra list <<< "$CASES"
for c in "${list[@]}"; do
    name=${c%%|*}; args=${c#*|}
    # The bench's copy and GEMM-rate measurements come first (about 100 launches): the prefill
    # starts at the first embedding kernel after them.
    timeout 150 $NCU --launch-count ${COUNT:-400} --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,launch__grid_size \
        --csv --print-units base /tmp/b/mixtral-chat bench --device cuda --layers 2 --gen-len 2 --batch 1 $args > $OUT/ncu-prefill-$name.csv 2>&1
    echo "[$name rc=$?]"
    python3 - "$OUT/ncu-prefill-$name.csv" > $OUT/prefill-$name.txt <<'PY'
import csv, sys, collections
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
head = rows[0]; rows = rows[1:]
ki, mi, vi, ii = head.index("Kernel Name"), head.index("Metric Name"), head.index("Metric Value"), head.index("ID")
per = collections.OrderedDict()
for r in rows:
    per.setdefault((int(r[ii]), r[ki]), {})[r[mi]] = float(r[vi].replace(",", ""))
launches = sorted(per.items())
starts = [n for n, ((i, k), m) in enumerate(launches) if k.startswith("embed_")]
if not starts: print("no embedding kernel in the profile"); sys.exit()
end = starts[1] if len(starts) > 1 else len(launches)
seq = launches[starts[0]:end]
print(f"{'#':>4} {'kernel':70} {'grid':>7} {'us':>9} {'MB':>8} {'GB/s':>6}")
by = collections.defaultdict(lambda: [0, 0.0, 0.0])
tot = 0.0
for (i, k), m in seq:
    t = m['gpu__time_duration.sum'] / 1e3; b = (m['dram__bytes_read.sum'] + m['dram__bytes_write.sum']) / 1e6
    tot += t; s = by[k[:70]]; s[0] += 1; s[1] += t; s[2] += b
    print(f"{i:4} {k[:70]:70} {int(m.get('launch__grid_size', 0)):7} {t:9.1f} {b:8.1f} {b / t * 1e3 if t else 0:6.0f}")
print(f"\ntotal {tot:.1f} us over {len(seq)} kernels; by name:")
for k, (n, t, b) in sorted(by.items(), key=lambda kv: -kv[1][1]):
    print(f"{k:70} {n:4} {t:9.1f} us {100 * t / tot:5.1f}% {b:8.1f} MB")
PY
    cat $OUT/prefill-$name.txt | tail -40
done
