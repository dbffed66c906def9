#!/bin/bash
# Nsight Compute on the decode GEMVs (bf16 against e4m3, Mistral-7B shapes on 2 layers), to see
# what limits the e4m3 ones (docs/fp8.md). Run with carry [".device/run"]; output in $OUT.
cd "$(dirname "$0")/../.."
mkdir -p /tmp/b && tar xJf .device/run/run.tar.xz -C /tmp/b
export LD_LIBRARY_PATH=/tmp/b/lib MIXTRAL_KERNEL_CACHE=/tmp/kc MIXTRAL_CUDA_GRAPHS=0 MIXTRAL_PDL=0
NCU=$(command -v ncu || ls /usr/local/cuda*/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
echo "ncu: ${NCU:-none}"; [ -z "$NCU" ] && { ls /usr/local/cuda*/bin 2>&1 | head; exit 0; }
for w in bf16 fp8; do
    q=$([ $w = fp8 ] && echo "--quantize fp8")
    timeout 150 $NCU --kernel-name regex:'^gemv_(norm_)?(bf16|e4m3)_r1$' --launch-skip 20 --launch-count 4 \
        --section SpeedOfLight --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis --section WarpStateStats \
        --section Occupancy --section InstructionStats \
        --metrics sm__pipe_alu_cycles_active.avg.pct_of_peak_sustained_active,sm__pipe_fma_cycles_active.avg.pct_of_peak_sustained_active,sm__pipe_lsu_cycles_active.avg.pct_of_peak_sustained_active,sm__inst_executed_pipe_alu.avg.pct_of_peak_sustained_active,sm__pipe_shared_cycles_active.avg.pct_of_peak_sustained_active \
        /tmp/b/mixtral-chat bench --device cuda --preset mistral-7b --layers 2 $q --batch 1 --prompt-len 16 --gen-len 8 \
        > $OUT/ncu-$w.txt 2>&1
    echo "[$w rc=$?]"; grep -E "gemv_|pipe|Memory Throughput|DRAM Throughput|Compute \(SM\)|Issue Slots Busy|Executed Ipc|Stall|Achieved Occupancy|Registers Per|Executed Instructions  " $OUT/ncu-$w.txt | head -60
done
