#!/usr/bin/env bash
# One device call of record for a prebuilt .devbuild/libmoe12x.so (run from the repo root on the
# GPU machine): full suite (AUTO), the GEMM + quantizer suites with the SM90 wgmma kernel forced,
# the prefill sweep, the quick decode sweep, compute-sanitizer with the wgmma kernel forced,
# per-kernel durations (deepseek-v3, T = 4096) and a forced-wgmma prefill check at T = 512, 1024.
# Leaves 4 files in $OUT (the device tool returns few): TAG-prefill.{json,log,png}, TAG-run.tgz.
#   bash scripts/device_record.sh s4
#   RECORD_SHORT=1 bash scripts/device_record.sh s8   # suites, sweeps, memcheck only (~6 min)
tag=${1:-record}
source scripts/device_lib.sh && dev_install > /dev/null || exit 1
O=${OUT:-/tmp/moe12x-out}; R=$O/r; mkdir -p "$R"
DEV_OUT=$R; DEV_TIMEOUT=150 dev_pytest $tag-suite
DEV_TIMEOUT=100 MOE12X_SM90_WGMMA=1 dev_pytest $tag-suite-wgmma tests/test_gpu_moe.py tests/test_gpu_quant.py
DEV_OUT=$O; DEV_TIMEOUT=250 dev_bench $tag-prefill --prefill | tail -8; cp /tmp/$tag-prefill.png "$O/" 2>/dev/null
DEV_OUT=$R; DEV_TIMEOUT=70 dev_bench $tag-decode-quick --quick | tail -6
OUT=$R MOE12X_SM90_WGMMA=1 SANITIZE_TIMEOUT=90 timeout 400 bash scripts/device_sanitize.sh
if [[ -n ${RECORD_SHORT:-} ]]; then tar czf "$O/$tag-run.tgz" -C "$R" . && ls "$O"; exit 0; fi
ncu=$(command -v ncu || ls /usr/local/cuda*/bin/ncu 2>/dev/null | head -1)
if [[ -n $ncu ]]; then
  (cd /tmp && timeout 60 "$ncu" --clock-control none --metrics gpu__time_duration.sum \
     python3 "$DEV_REPO/scripts/prof_layer.py" deepseek-v3 4096 1 > "$R/$tag-durations-deepseek-4096.txt" 2>&1)
  grep -E "^  [a-z]|gpu__time" "$R/$tag-durations-deepseek-4096.txt" | paste - - | awk '{print $1, $NF}' | tail -6
fi
for prog in sm90_wgmma_rate sm90_ws_ladder; do  # built by scripts/build_devlib.sh
  [[ -x .devbuild/$prog ]] && timeout 30 ./.devbuild/$prog > "$R/$tag-$prog.txt" 2>&1 && tail -3 "$R/$tag-$prog.txt"
done
DEV_TIMEOUT=60 MOE12X_SM90_WGMMA=1 dev_bench $tag-forced-ws --prefill --T 512,768,1024 --shapes gpt-oss-120b,deepseek-v3 | tail -4
tar czf "$O/$tag-run.tgz" -C "$R" . && ls "$O"
