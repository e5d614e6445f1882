#!/usr/bin/env bash
# One GPU check for lightning-papers: the GPU-marked tests (bf16-mixed and 16-mixed with every callback,
# channels_last), every benchmark's CUDA mode and the full demo, sized to fit in about 7 minutes on one H100
# (an estimate: not yet timed with the new landscape steps); prints one table last (benchmarks/gpu_table.py).
#
#   bash benchmarks/gpu_check.sh             # on a CUDA machine, from the checkout (PYTHONPATH=., no install)
#   bash benchmarks/gpu_check.sh --dry-run   # the same steps on the CPU with tiny sizes: checks the script
#   GPU_CHECK_ONLY="tests landscape" bash benchmarks/gpu_check.sh   # only the steps whose names start so
#
# Logs go to runs/gpu_check (and, where $OUT is set, as the device tool sets it, table.md and logs.tar.gz
# there); each step has its own time limit, so one hang cannot eat the rest, and a failed step is a row in
# the table, not the end of the check.
set -uo pipefail

DRY=0
if [[ "${1:-}" == "--dry-run" ]]; then DRY=1; elif [[ -n "${1:-}" ]]; then
  echo "usage: bash benchmarks/gpu_check.sh [--dry-run]; got '$1'" >&2; exit 2
fi
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
PY="${PYTHON:-python3}"
LOG=runs/gpu_check
rm -rf "$LOG" && mkdir -p "$LOG"
START=$(date +%s)

if [[ $DRY == 0 ]] && ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: torch sees no CUDA device; run with --dry-run to check the script on the CPU" >&2; exit 2
fi

step() {  # step NAME LIMIT_S CMD...: run with a time limit, log to $LOG/NAME.log, record status and seconds
  local name=$1 limit=$2; shift 2
  if [[ -n "${GPU_CHECK_ONLY:-}" ]]; then  # e.g. GPU_CHECK_ONLY="tests throughput": rerun some steps only
    local w keep=0
    for w in $GPU_CHECK_ONLY; do [[ $name == "$w"* ]] && keep=1; done
    [[ $keep == 1 ]] || return 0
  fi
  local t0=$(date +%s)
  echo "== $name (limit ${limit}s): $*"
  timeout --signal=INT --kill-after=10 "$limit" "$@" >"$LOG/$name.log" 2>&1
  local rc=$?
  echo "$name $rc $(( $(date +%s) - t0 ))" >>"$LOG/status.txt"
  tail -n 3 "$LOG/$name.log"
  # the table so far, where the device tool fetches it: a check cut short still brings its figures back
  if [[ -n "${OUT:-}" ]]; then "$PY" benchmarks/gpu_table.py "$LOG" >"$OUT/table.md" 2>&1; fi
}
: >"$LOG/status.txt"

{
  date -u +"%Y-%m-%dT%H:%MZ"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  "$PY" -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__)"
} >"$LOG/env.txt" 2>&1
cat "$LOG/env.txt"

if [[ $DRY == 1 ]]; then
  DEV=cpu; ACC=cpu; MODEL=resnet20; TB=16; TSTEPS=2; TWARM=1; ROUNDS=2; IMAGES=64; LBATCH=32; GRID="2 2"; LROUNDS=1
  LR_ARGS=(--steps 6 --noisy-steps 6 --warm-steps 0 --rounds 1)
  SC_ARGS=(--seeds 0 --baseline-steps 16 --val-every 4 --ratio 0.5)
  FID_SC_ARGS=(--fast)
  CLR_ARGS=(--seeds 0 --fixed-lrs 0.05 --max-steps 8 --step-size 2 --finder-steps 6 --val-every 4)
  DEMO=(fast=True); DEMO_PREC=32-true  # bf16 convolutions crawl on a CPU: the fast demo ran past 120 s in bf16
  STYLE_INF=(--sizes 32 48x32 --rounds 1 --warmup 1 --iters 1); STYLE_PREC=32  # fp16/bf16 convs crawl on a CPU
  STYLE_TRAIN=(--train-size 32 --train-steps 2 --train-warmup 1 --rounds 1)
else
  DEV=cuda; ACC=gpu; MODEL=resnet56; TB=1000; TSTEPS=60; TWARM=10; ROUNDS=3; IMAGES=10000; LBATCH=1000; GRID="4 4"; LROUNDS=2
  LR_ARGS=()
  SC_ARGS=(--seeds 0 1 2)
  # super-convergence the paper's way (accuracy sweep, equal weight-decay grids, 1cycle at B/8 and B, batch and
  # limited-data arms), at a larger scale: ResNet-56, 32 px, 1,000 training images, 3 seeds (~26k steps; not yet timed)
  FID_SC_ARGS=(--depth 56 --size 32 --train-size 1000 --seeds 0 1 2 --cache "$LOG/fidelity_superconvergence.jsonl")
  CLR_ARGS=()
  DEMO=(); DEMO_PREC=bf16-mixed
  STYLE_INF=(--sizes 256 512 1024 1920x1080 --rounds 3 --warmup 5 --iters 20 --compile --cuda-graphs); STYLE_PREC=16
  STYLE_TRAIN=(--train-size 256 --train-steps 30 --train-warmup 10 --rounds 3)
fi

# 1. training throughput at the ResNet-56 1cycle recipe's settings (batch 1000, channels_last), both mixed
#    precisions; first, with the surfaces, because open issues wait on these figures
for prec in bf16-mixed 16-mixed; do
  step "throughput_$prec" 120 "$PY" benchmarks/train_throughput.py --device "$DEV" --model "$MODEL" \
    --batch-size "$TB" --precision "$prec" --channels-last --steps "$TSTEPS" --warmup "$TWARM" --rounds "$ROUNDS"
done

# 2. loss surfaces: ours vs the original's per-point cost model (always fp32), 10k CIFAR-shaped images: ours in
#    fp32, bf16, bf16 with BatchNorm folded and channels_last, and --fast (the same + torch.compile)
for cfg in "fp32:" "bf16:--bf16" "fold_bf16:--bf16 --fold-bn --channels-last" "fast:--fast"; do
  name=${cfg%%:*}; read -r -a extra <<<"${cfg#*:}"
  step "landscape_$name" 120 "$PY" benchmarks/landscape.py --device "$DEV" --model "$MODEL" --data synthetic \
    --images "$IMAGES" --batch-size "$LBATCH" --grid $GRID --rounds "$LROUNDS" "${extra[@]}"
done

# 3. the GPU-marked tests: each under bf16-mixed and 16-mixed, channels_last weights
step tests 150 "$PY" -m pytest tests/gpu -m gpu -q -p no:cacheprovider -o addopts="" --timeout 200

# 4. the schedule benchmarks on the device (digits, ResNet-20), bf16-mixed
step lr_range 90 "$PY" benchmarks/lr_range.py --accelerator "$ACC" --precision bf16-mixed "${LR_ARGS[@]}"
# 1cycle at the best peak the earlier sweep found (0.4 / 0.2 / 0.1 gave 32 / 54 / 81 % on an H200, see
# benchmarks/README.md), bf16: one configuration, to leave the lease's minutes to the steps above
for cfg in "bf16-mixed 0.1"; do
  read -r prec peak <<<"$cfg"
  step "superconvergence_${prec}_lr$peak" 90 "$PY" benchmarks/superconvergence.py --accelerator "$ACC" \
    --precision "$prec" --max-lr "$peak" "${SC_ARGS[@]}"
done
step fidelity_superconvergence 480 "$PY" benchmarks/fidelity_superconvergence.py --device "$DEV" "${FID_SC_ARGS[@]}"
step clr_vs_fixed 90 "$PY" benchmarks/clr_vs_fixed.py --accelerator "$ACC" --precision bf16-mixed "${CLR_ARGS[@]}"

# 5. fast style transfer: TransformerNet, and the stylize path (ImageRunner, with CUDA graphs on the GPU), vs a
#    plain PyTorch re-implementation, fp16 + torch.compile up to 1920x1080 (the compiles are most of the ~60 s); then
#    FastStyleTransfer's training step under Trainer vs a plain loop (batch 4 of 256 px, fp16, VGG random weights);
#    the dry run in fp32
step style_inference 150 "$PY" benchmarks/style_transfer.py --device "$DEV" --parts inference --precision "$STYLE_PREC" \
  "${STYLE_INF[@]}"
step style_train 90 "$PY" benchmarks/style_transfer.py --device "$DEV" --parts train --precision "$STYLE_PREC" \
  "${STYLE_TRAIN[@]}"

# 6. the demo, end to end: the full one in bf16-mixed on the GPU, --fast in fp32 on the dry run
step demo 120 "$PY" -c "
import json, sys
from lightning_papers.demo import run_demo
r = run_demo(out_dir='$LOG/demo', device='$ACC', precision='$DEMO_PREC', ${DEMO[*]:-})
print(json.dumps({'benchmark': 'demo', **r.to_dict()}, default=str))
"

echo "total $(( $(date +%s) - START )) s" >>"$LOG/status.txt"
"$PY" benchmarks/gpu_table.py "$LOG" >"$LOG/table.md"
if [[ -n "${OUT:-}" ]]; then
  tar --exclude='*.ckpt' -czf "$OUT/logs.tar.gz" -C "$(dirname "$LOG")" "$(basename "$LOG")"
  cp "$LOG/table.md" "$OUT/table.md"
fi
cat "$LOG/table.md"
