#!/usr/bin/env bash
# GPU readiness check (issue #14), one run of at most ~8 minutes: the device, the gpu
# tests (tests/gpu), throughput on the device (trust GA at populations 200 and 2,000,
# lowrank_es at 1,000 and 10,000), the `fast` preset for 60 s of search (time to 90%
# and 95% validation, test accuracy of the best-by-validation genome) and
# `genreg-paper` for 600 generations (time, test accuracy); then a summary. Every step
# runs even when one before it failed; the exit status is 1 if any failed.
#
# Without CUDA it says so and runs the same steps tiny on the CPU (the smoke, ~1 min;
# CI runs it through tests/benchmarks/test_gpu_check.py).
#
#   bash benchmarks/gpu_check.sh [--data DIR] [--smoke]
#
# Environment (all optional):
#   PYTHON                  interpreter (default .venv/bin/python if present, else
#                           python3); genreg is imported from this checkout
#   GPU_CHECK_SMOKE=1|0     force the tiny sizes (1) or the full ones (0); default:
#                           full with CUDA, smoke without
#   GPU_CHECK_DEVICE        cuda or cpu (default cuda when available)
#   GPU_CHECK_OUT           folder for the logs and run folders (default a new
#                           temporary one)
#   GPU_CHECK_BUDGET        seconds for the whole check (default 470): a step gets at
#                           most what is left, and is cut off at its own limit
#   sizes: GPU_CHECK_GA_POPS, GPU_CHECK_LOWRANK_POPS (space-separated populations),
#   GPU_CHECK_REPEATS, GPU_CHECK_FAST_SECONDS, GPU_CHECK_PAPER_GENERATIONS,
#   GPU_CHECK_PAPER_MAX_SECONDS (cap on the genreg-paper run), GPU_CHECK_FORWARD
#   ("population images es_population" of the engine comparison)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
DATA=data/prepared
SMOKE=${GPU_CHECK_SMOKE:-}
while [ $# -gt 0 ]; do
  case $1 in
    --data) DATA=$2; shift 2 ;;
    --smoke) SMOKE=1; shift ;;
    *) echo "gpu_check.sh: unknown argument $1 (use --data DIR, --smoke)" >&2; exit 2 ;;
  esac
done

if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
for split in train val test; do
  if [ ! -f "$DATA/$split.npz" ]; then
    echo "gpu_check.sh: no prepared data: $DATA/$split.npz is missing" \
      "(run \`genreg prepare\`, or pass --data DIR)" >&2
    exit 2
  fi
done

HAS_CUDA=$("$PYTHON" -c 'import torch; print(int(torch.cuda.is_available()))')
if [ "$HAS_CUDA" = 1 ]; then DEVICE=${GPU_CHECK_DEVICE:-cuda}; else DEVICE=${GPU_CHECK_DEVICE:-cpu}; fi
if [ "$DEVICE" = cuda ] && [ "$HAS_CUDA" != 1 ]; then
  echo "gpu_check.sh: GPU_CHECK_DEVICE=cuda, but torch sees no CUDA device" >&2
  exit 2
fi
if [ -z "$SMOKE" ]; then SMOKE=$((1 - HAS_CUDA)); fi
if [ "$HAS_CUDA" != 1 ]; then echo "no CUDA device: running the CPU smoke"; fi

if [ "$SMOKE" = 1 ]; then
  MODE=smoke
  GA_POPS=${GPU_CHECK_GA_POPS:-60}  # genreg-plus keeps 50 elites: more than 50
  LOWRANK_POPS=${GPU_CHECK_LOWRANK_POPS:-100 200}
  REPEATS=${GPU_CHECK_REPEATS:-1}
  FAST_SECONDS=${GPU_CHECK_FAST_SECONDS:-5}
  PAPER_GENERATIONS=${GPU_CHECK_PAPER_GENERATIONS:-5}
  FORWARD=${GPU_CHECK_FORWARD:-20 20 20}
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
else
  MODE=full
  GA_POPS=${GPU_CHECK_GA_POPS:-200 2000}
  LOWRANK_POPS=${GPU_CHECK_LOWRANK_POPS:-1000 10000}
  REPEATS=${GPU_CHECK_REPEATS:-5}
  FAST_SECONDS=${GPU_CHECK_FAST_SECONDS:-60}
  PAPER_GENERATIONS=${GPU_CHECK_PAPER_GENERATIONS:-600}
  FORWARD=${GPU_CHECK_FORWARD:-200 200 400}
fi
PAPER_MAX_SECONDS=${GPU_CHECK_PAPER_MAX_SECONDS:-90}
BUDGET=${GPU_CHECK_BUDGET:-470}
OUT=${GPU_CHECK_OUT:-$(mktemp -d -t gpu_check.XXXXXX)}
mkdir -p "$OUT"
read -r FWD_POP FWD_IMAGES FWD_ES_POP <<<"$FORWARD"
echo "gpu_check: mode $MODE, device $DEVICE, python $PYTHON, data $DATA, logs in $OUT"

TIMEOUT=()
if command -v timeout >/dev/null; then TIMEOUT=(timeout); fi
NAMES=() STATUSES=() TIMES=()
FAILED=0

# step NAME LIMIT CMD...: run CMD into $OUT/NAME.log (and the terminal), cut off
# after LIMIT seconds or what is left of the budget (a shell function runs uncut);
# record the outcome and carry on
step() {
  local name=$1 limit=$2 rc=0 status started=$SECONDS
  shift 2
  local left=$((BUDGET - SECONDS))
  echo
  echo "=== $name ==="
  if [ "$left" -lt 10 ]; then
    status="FAILED (not run: the ${BUDGET} s budget is spent)"
  else
    if [ "$limit" -gt "$left" ]; then limit=$left; fi
    if [ ${#TIMEOUT[@]} -gt 0 ] && ! declare -F "$1" >/dev/null; then
      "${TIMEOUT[@]}" "$limit" "$@" 2>&1 | tee "$OUT/$name.log" || rc=$?
    else
      "$@" 2>&1 | tee "$OUT/$name.log" || rc=$?
    fi
    case $rc in
      0) status=OK ;;
      124) status="FAILED (cut off after $limit s)" ;;
      *) status="FAILED (exit $rc)" ;;
    esac
  fi
  if [ "$status" != OK ]; then FAILED=1; fi
  NAMES+=("$name") STATUSES+=("$status") TIMES+=($((SECONDS - started)))
}

device_info() {
  if command -v nvidia-smi >/dev/null; then nvidia-smi -L; else echo "nvidia-smi: not found"; fi
  "$PYTHON" - "$DEVICE" <<'EOF'
import sys

import torch

device = torch.device(sys.argv[1])
print(f"python {sys.version.split()[0]}, torch {torch.__version__}, "
      f"CUDA build {torch.version.cuda}, {torch.get_num_threads()} CPU threads")
print(f"CUDA available: {torch.cuda.is_available()}; running on {device}")
if device.type == "cuda":
    props = torch.cuda.get_device_properties(device)
    print(f"device: {props.name}, compute capability {props.major}.{props.minor}, "
          f"{props.total_memory / 2**30:.1f} GiB, {props.multi_processor_count} SMs")
    print(f"float32 matmul precision: {torch.get_float32_matmul_precision()}")
EOF
}

ga_args=() lowrank_args=()
for p in $GA_POPS; do ga_args+=(--ga-population "$p"); done
for p in $LOWRANK_POPS; do lowrank_args+=(--lowrank-population "$p"); done

step device 30 device_info
step gpu_tests 100 "$PYTHON" -m pytest -q -m gpu tests/gpu -p no:cacheprovider \
  --basetemp "$OUT/pytest"
step throughput 100 "$PYTHON" benchmarks/throughput.py --device "$DEVICE" \
  --population "$FWD_POP" --images "$FWD_IMAGES" --es-population "$FWD_ES_POP" \
  --repeats "$REPEATS" "${ga_args[@]}" "${lowrank_args[@]}"
step fast $(($(printf '%.0f' "$FAST_SECONDS") + 60)) "$PYTHON" benchmarks/timed_run.py --preset fast \
  --device "$DEVICE" --max-seconds "$FAST_SECONDS" --data "$DATA" --out "$OUT/fast" \
  --label "fast-${FAST_SECONDS}s"
step genreg_paper $(($(printf '%.0f' "$PAPER_MAX_SECONDS") + 45)) "$PYTHON" benchmarks/timed_run.py \
  --preset genreg-paper --device "$DEVICE" --generations "$PAPER_GENERATIONS" \
  --max-seconds "$PAPER_MAX_SECONDS" --data "$DATA" --out "$OUT/genreg_paper" \
  --label "genreg-paper-${PAPER_GENERATIONS}g"

echo
echo "=================== gpu_check summary ==================="
echo "mode $MODE, device $DEVICE; logs and run folders in $OUT"
for i in "${!NAMES[@]}"; do
  printf '%-13s %5s s  %s\n' "${NAMES[$i]}" "${TIMES[$i]}" "${STATUSES[$i]}"
done
show() {  # the figures of one step's log, if it wrote any
  [ -f "$OUT/$1.log" ] && grep -E "$2" "$OUT/$1.log" || true
}
echo "--- device"
show device '^(GPU|device|python|CUDA)'
echo "--- gpu tests"
show gpu_tests '(passed|failed|skipped|error)'
echo "--- throughput (seconds per generation)"
show throughput '^(population|per-genome|batched|ratio|full|ES|trust|lowrank| *[0-9,]+ \|)'
echo "--- fast preset, ${FAST_SECONDS} s of search; genreg-paper, ${PAPER_GENERATIONS} generations"
show fast ' generations in |^(RESULT|  time to|  best)'
show genreg_paper ' generations in |^(RESULT|  best)'
if grep -q 'stop=max_seconds' "$OUT/genreg_paper.log" 2>/dev/null; then
  echo "note: genreg-paper hit its ${PAPER_MAX_SECONDS} s cap before ${PAPER_GENERATIONS} generations"
fi
echo "total ${SECONDS} s"
if [ "$FAILED" = 1 ]; then
  echo "gpu_check: FAILED"
  exit 1
fi
echo "gpu_check: all steps passed"
