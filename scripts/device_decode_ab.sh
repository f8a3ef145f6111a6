#!/usr/bin/env bash
# One device call for the persistent decode kernel (kernel/moe_decode.cuh): the GPU suite on the
# carried library, then a same-call A/B of the static schedule (the decode kernel) against the
# dynamic one, and the dynamic one of a baseline library, alternated; host overhead last.
#   bash scripts/device_decode_ab.sh [T list] [rounds]
# Libraries (carry .devbuild): NEW_LIB (default .devbuild/libmoe12x.so, scripts/build_devlib.sh) and,
# if present, BASE_LIB (default .devbuild/base.so: e.g. a build of 6eb0712, the commit before v38).
# Leaves ab.log (ab-full.log: every bench line), suite-opt.pytest.log, suite.pytest.log, host.txt
# under $OUT; starts no bench run after DEADLINE s (400); exits non-zero if a pytest run failed.
T=${1:-1,2,4,8,16,32}; ROUNDS=${2:-2}
NEW=${NEW_LIB:-.devbuild/libmoe12x.so}; BASE=${BASE_LIB:-.devbuild/base.so}
runs=("$NEW static" "$NEW dynamic"); [[ -f $BASE ]] && runs+=("$BASE dynamic")
# The decode kernel is opt-in (MOE12X_DECODE_KERNEL=1, c_api.cpp) until it has run on a GPU: the A/B's
# static rows run with it.
source scripts/device_lib.sh && dev_install || exit 1
O=${OUT:-/tmp/moe12x-out}
dev_use_lib "$NEW"
# Suite 1: every opt-in path (the decode kernel, chunked FC2 workspace sizes); the FC2 column-chunk
# tests compare against a one-pass run, which MOE12X_FC2_CHUNKS=1 would chunk too: they run in
# suite 2, the defaults.
rc=0
MOE12X_DECODE_KERNEL=1 MOE12X_FC2_CHUNKS=1 DEV_TIMEOUT=${SUITE_TIMEOUT:-240} dev_pytest suite-opt -k "not fc2_column_chunks" ${SUITE_ARGS:-} || rc=1
DEV_TIMEOUT=${SUITE_TIMEOUT:-240} dev_pytest suite ${SUITE_ARGS:-} || rc=1
{
  echo "# $(date -u +%F) $(nvidia-smi --query-gpu=name --format=csv,noheader): decode A/B, bench_moe.py --no-torch --budget 0.1 --T $T"
  for r in $(seq "$ROUNDS"); do
    for v in "${runs[@]}"; do
      (( SECONDS > ${DEADLINE:-400} )) && { echo "== deadline: stopped before $v round $r"; break 2; }
      set -- $v
      dev_use_lib "$1" > /dev/null
      echo "== $1 schedule=$2 round $r"
      (cd /tmp && MOE12X_DECODE_KERNEL=1 timeout 120 python3 "$DEV_REPO/bench/bench_moe.py" --no-torch --budget 0.1 --T "$T" --schedule "$2" \
         --out-json /tmp/ab-$(basename $1)-$2-$r.json --png /tmp/ab.png 2>&1 | tee -a "$O/ab-full.log" \
         | sed -n '/^ceilings/p; /roofline efficiency/,/^$/p')
    done
  done
} 2>&1 | tee "$O/ab.log"
dev_use_lib "$NEW" > /dev/null
(( SECONDS < 530 )) && (cd /tmp && MOE12X_DECODE_KERNEL=1 timeout 50 python3 "$DEV_REPO/bench/host_overhead.py" 2>&1 | tail -30) > "$O/host.txt"
grep -iE "layer_|fused" "$O/host.txt" | head -12
exit $rc
