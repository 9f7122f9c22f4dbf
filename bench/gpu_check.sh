#!/usr/bin/env bash
# GPU check of the data2vec plugin against the reference (one short run, <= 5 minutes in total).
#
# Phase 1 (bench/gpu_smoke.py, <= SMOKE_TIMEOUT s): the data2vec 2.0 tiny configs (audio/image/text; data2vec
# 1.0 gets the same in phase 2) train for 20 updates with fairseq-hydra-train in fp16 and in bf16; then one
# fairseq-style step on the trained checkpoint (model cast to fp16/bf16 on the GPU, criterion forward, backward,
# teacher step) checks a finite loss, a half-precision student and an fp32 teacher on the GPU.
#
# Phase 2: for each of audio, text, vision (bench sizes of bench/bench_vs_reference.py: 4 layers; audio 256-d,
# 4 x 2 s clips; text 256-d, 8 x 128 tokens; image 192-d, 8 x 224^2) it trains, as separate
# fairseq-hydra-train processes on the GPU (common.cpu=false):
#   plugin    common.fp16=true
#   plugin    common.bf16=true
#   reference common.fp16=true   (Meta's examples/data2vec + runtime shim; the baseline of the ratios)
# and reports updates/s, samples/s, plugin/reference ratios, peak CUDA memory, EMA step time and the
# loss comparison, and the live dtype of each run's EMA teacher (`_ema`) at the end of training (fp32 expected
# in every precision: "teacher dtype: OK ..."; checkpoints cannot show it, fairseq saves them as fp32).
#
# Output: stdout, and $OUT/gpu_results.md (+ $OUT/gpu_check.log) when $OUT is set; otherwise
# bench/gpu_results.md. Copy the table into bench/RESULTS.md (section "gpu-bench") with machine and date.
#
# Usage: bench/gpu_check.sh   env: GPU_CHECK_UPDATES (20), GPU_CHECK_TIMEOUT (290 s in total), SMOKE_TIMEOUT (90 s)
# Without a CUDA GPU it prints "SKIPPED: ..." and exits 0.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PY:-$ROOT/.venv/bin/python}"
[[ -x "$PY" ]] || PY="$(command -v python3)"
UPDATES="${GPU_CHECK_UPDATES:-20}"
TOTAL_TIMEOUT="${GPU_CHECK_TIMEOUT:-290}"
SMOKE_TIMEOUT="${SMOKE_TIMEOUT:-90}"
DEST="${OUT:-$ROOT/bench}"
mkdir -p "$DEST"
MD="$DEST/gpu_results.md"
LOG="$DEST/gpu_check.log"

gpu_info="$(timeout 60 "$PY" - <<'EOF' 2>/dev/null
import torch
if torch.cuda.is_available() and torch.cuda.device_count() > 0:
    p = torch.cuda.get_device_properties(0)
    print(f"{p.name}, {p.total_memory / 2**30:.0f} GiB, bf16={torch.cuda.is_bf16_supported()}, torch {torch.__version__}")
EOF
)"
if [[ -z "$gpu_info" ]]; then
  msg="SKIPPED: no CUDA GPU visible to torch on $(hostname) ($(date -u '+%Y-%m-%d %H:%M UTC')); bench/gpu_check.sh needs one."
  echo "$msg"
  if [[ -n "${OUT:-}" ]]; then printf '# GPU check\n\n%s\n' "$msg" > "$MD"; fi
  exit 0
fi
echo "GPU: $gpu_info"
echo "updates per run: $UPDATES, total time limit: ${TOTAL_TIMEOUT}s, output: $MD"

start=$(date +%s)
printf '# GPU check\n\n' > "$MD"
timeout --signal=INT --kill-after=10 "$SMOKE_TIMEOUT" \
  "$PY" "$ROOT/bench/gpu_smoke.py" --device cuda --kinds v2-audio,v2-image,v2-text --precisions fp16,bf16 \
    --updates 20 --run-timeout 25 \
    --out "$MD" 2>&1 | tee "$LOG"
smoke_rc=${PIPESTATUS[0]}
[[ $smoke_rc -ne 0 ]] && echo "SMOKE CHECK FAILED (rc=$smoke_rc, see above)"
BENCH_TIMEOUT=$(( TOTAL_TIMEOUT - $(date +%s) + start ))
(( BENCH_TIMEOUT < 60 )) && BENCH_TIMEOUT=60
# Order per modality: plugin fp16, plugin bf16, reference fp16 (one repeat: the budget is 5 minutes).
# A run that does not finish within --run-timeout is reported as FAILED, the others are still reported.
timeout --signal=INT --kill-after=10 "$BENCH_TIMEOUT" \
  "$PY" "$ROOT/bench/bench_vs_reference.py" --device cuda \
    --variants plugin:fp16,plugin:bf16,reference:fp16 \
    --modalities audio,text,vision --updates "$UPDATES" --warmup 5 --repeats 1 --threads 0 \
    --ema-reps 20 --check-teacher-dtype --run-timeout 60 --time-budget $(( BENCH_TIMEOUT - 20 )) \
    --results-md "$MD" --section gpu-bench 2>&1 | tee -a "$LOG"
rc=${PIPESTATUS[0]}
elapsed=$(( $(date +%s) - start ))
{
  echo
  echo "GPU: $gpu_info. gpu_check.sh finished with rc=$rc after ${elapsed}s ($(date -u '+%Y-%m-%d %H:%M UTC'))."
} >> "$MD"
if grep -q "teacher dtype: FAIL" "$LOG"; then
  echo "TEACHER DTYPE CHECK FAILED (see above)"; rc=3
fi
[[ $smoke_rc -ne 0 && $rc -eq 0 ]] && rc=4
[[ $rc -eq 124 ]] && echo "gpu_check.sh: hit the ${TOTAL_TIMEOUT}s limit; partial results in $LOG"
echo "results: $MD (rc=$rc, ${elapsed}s)"
exit "$rc"
