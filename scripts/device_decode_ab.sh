#!/usr/bin/env bash
# One device call for the persistent decode kernel (kernel/moe_decode.cuh): the GPU suite on the
# carried library, then a same-call A/B of the static schedule (the decode kernel) against the
# dynamic one, and the dynamic one of a baseline library, alternated; host overhead last.
#   bash scripts/device_decode_ab.sh [T list] [rounds]     (libraries: .devbuild/v38.so, .devbuild/base.so)
# Leaves ab.log, suite.pytest.log, host.txt under $OUT.
T=${1:-1,2,4,8,16,32}; ROUNDS=${2:-2}
source scripts/device_lib.sh && dev_install || exit 1
O=${OUT:-/tmp/moe12x-out}
dev_use_lib .devbuild/v38.so
DEV_TIMEOUT=${SUITE_TIMEOUT:-240} dev_pytest suite ${SUITE_ARGS:-}
{
  echo "# $(date -u +%F) $(nvidia-smi --query-gpu=name --format=csv,noheader): decode A/B, bench_moe.py --no-torch --budget 0.1 --T $T"
  for r in $(seq "$ROUNDS"); do
    for v in "v38.so static" "v38.so dynamic" "base.so dynamic"; do
      set -- $v
      dev_use_lib .devbuild/$1 > /dev/null
      echo "== $1 schedule=$2 round $r"
      (cd /tmp && timeout 300 python3 "$DEV_REPO/bench/bench_moe.py" --no-torch --budget 0.1 --T "$T" --schedule "$2" \
         --out-json /tmp/ab-$1-$2-$r.json --png /tmp/ab.png 2>&1 | sed -n '/^ceilings/p; /roofline efficiency/,/^$/p')
    done
  done
} 2>&1 | tee "$O/ab.log"
dev_use_lib .devbuild/v38.so > /dev/null
(cd /tmp && timeout 120 python3 "$DEV_REPO/bench/host_overhead.py" 2>&1 | tail -30) > "$O/host.txt"
grep -iE "layer_|fused" "$O/host.txt" | head -12
