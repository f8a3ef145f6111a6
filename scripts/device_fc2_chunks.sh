#!/usr/bin/env bash
# One device call for FC2 + combine in output-column chunks (params.hpp: fc2_y_bytes,
# plan_fc2_chunks; opt-in workspace sizes with MOE12X_FC2_CHUNKS=1): the chunk tests, the GPU
# suite with chunked workspace sizes, then a same-call A/B at prefill sizes, each T in its own
# process so its layer's workspace is sized for that T (a workspace sized for a larger max_tokens
# holds every column: no chunks). Arms: one pass (default sizes), two chunks (MOE12X_FC2_CHUNKS=1),
# chunks of COLS columns (MOE12X_FC2_CHUNK_COLS: is a chunk of y that stays in L2 faster?).
#   bash scripts/device_fc2_chunks.sh [T list] [shapes] [rounds]     (SKIP_TESTS=1: the A/B only)
# Carry .devbuild (scripts/build_devlib.sh). Leaves chunks-tests, suite-chunks .pytest.log,
# chunks-ab.log and chunks-ab-full.log (every bench line) under $OUT; stops starting bench runs
# after DEADLINE s (470) of the call (a bench run takes up to 100 s more); exits non-zero if a pytest run failed.
T=${1:-512,2048}; SHAPES=${2:-qwen3-30b-a3b,qwen3-235b-a22b}; ROUNDS=${3:-2}; COLS=${COLS:-512}
source scripts/device_lib.sh && dev_install || exit 1
O=${OUT:-/tmp/moe12x-out}
dev_use_lib .devbuild/libmoe12x.so
rc=0
# SKIP_TESTS=1: the A/B alone (scripts/device_decode_ab.sh's two suites ran these tests already)
if [[ ${SKIP_TESTS:-0} != 1 ]]; then
  DEV_TIMEOUT=240 dev_pytest chunks-tests tests/test_gpu_moe.py -k "fc2_column_chunks or T517 or cuda_graph or T4099" || rc=1
  # (the chunk tests compare against a one-pass run, which MOE12X_FC2_CHUNKS=1 would chunk too)
  MOE12X_FC2_CHUNKS=1 DEV_TIMEOUT=${SUITE_TIMEOUT:-200} dev_pytest suite-chunks -k "not fc2_column_chunks" ${SUITE_ARGS:-} || rc=1
fi
arms=("MOE12X_FC2_CHUNKS=0" "MOE12X_FC2_CHUNKS=1" "MOE12X_FC2_CHUNKS=1 MOE12X_FC2_CHUNK_COLS=$COLS")
{
  echo "# $(date -u +%F) $(nvidia-smi --query-gpu=name --format=csv,noheader): FC2 column chunks A/B, bench_moe.py --no-torch --budget 0.1, one process per T"
  for r in $(seq "$ROUNDS"); do
    for t in ${T//,/ }; do
      for a in "${arms[@]}"; do
        (( SECONDS > ${DEADLINE:-470} )) && { echo "== deadline: stopped before T=$t $a round $r"; break 3; }
        echo "== T=$t $a round $r"
        (cd /tmp && env $a timeout 100 python3 "$DEV_REPO/bench/bench_moe.py" --no-torch --budget 0.1 --T "$t" \
           --shapes "$SHAPES" --out-json /tmp/chunks-$t-$r.json --png /tmp/chunks.png 2>&1 \
           | tee -a "$O/chunks-ab-full.log" | sed -n '/workspace/p; /roofline efficiency/,/^$/p')
      done
    done
  done
} 2>&1 | tee "$O/chunks-ab.log"
exit $rc
