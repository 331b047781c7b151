#!/usr/bin/env bash
# The one GPU check: under 7 minutes on one H100, compile included. Sections, in this order,
# each writing its results to $OUT (or output/gpu_check/) as it finishes:
#   a. correctness: the GPU path against the reference (fp32, TF32 off), compiled against eager,
#      and the 50-step training curve with compile and CUDA graphs against eager;
#   b. training images/s of the paper net at 6x128^2 and at the largest batch <= 64 that fits,
#      bf16, eager and compiled + CUDA graph (with OFFICIAL=<clone>: the official code beside ours);
#   c. inference latency at 256^2, 512^2 and 1024x768 (bf16);
#   d. a real run: 1-GPU torchrun train.py of the paper net, 300 steps on BSD400 plus the demo
#      set's rain and haze pairs, then test.py on Kodak24 and the demo test sets;
#   e. the profile of a training step: kernels per step and the GPU-busy share.
#
#   bash scripts/gpu_check.sh --prepare   # here, once: .gpu_data/ (BSD400, Kodak24, prompts.pt; git-ignored)
#   bash scripts/gpu_check.sh             # on the GPU machine, with .gpu_data carried along
#   GPU_CHECK_DEVICE=cpu GPU_CHECK_BUDGET=3000 bash scripts/gpu_check.sh   # dry run on a CPU, tiny sizes
#
# $OUT gets at most 8 files: correctness.json, train_eager.json, train_compiled.json,
# train_official.json (with OFFICIAL), infer.json, real_run.txt, profile.json, summary.txt.
#
# Sections share a time budget (GPU_CHECK_BUDGET seconds, default 410); one that fails or runs out
# of time does not stop the others; the exit status is the number of failed sections.
set -u -o pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
DATA=.gpu_data

if [ "${1:-}" = "--prepare" ]; then
    # What the GPU machine cannot make itself (it has no network and no copy of ../shared): the
    # paper's denoising images, Kodak24, and the instruction embeddings restoration training needs
    # (prompts.pt, 0.5 MB: the 83 MB encoder does not fit the transfer limit).
    PY=${PYTHON:-.venv/bin/python}
    SHARED=${SHARED:-../shared/datasets}
    [ -d "$SHARED/BSD400" ] && [ -d "$SHARED/Kodak24" ] || { echo "error: $SHARED/{BSD400,Kodak24} not found; set SHARED" >&2; exit 2; }
    [ -f ckpt/text_encoder/labels.json ] || { echo "error: ckpt/text_encoder not found; run \`python train.py --stage text\` first" >&2; exit 2; }
    rm -rf "$DATA" && mkdir -p "$DATA/Train/Denoise" "$DATA/test/denoise" "$DATA/text_encoder"
    cp -r "$SHARED/BSD400/." "$DATA/Train/Denoise/"
    cp -r "$SHARED/Kodak24" "$DATA/test/denoise/Kodak24"
    "$PY" -c "from utils.instructions import training_prompts; training_prompts('ckpt/text_encoder')" || exit 1
    cp ckpt/text_encoder/prompts.pt "$DATA/text_encoder/"
    du -sh "$DATA"
    exit 0
fi

DEVICE=${GPU_CHECK_DEVICE:-cuda}
if [ -n "${PYTHON:-}" ]; then
    PY=$PYTHON
elif [ "$DEVICE" = cpu ] && [ -x .venv/bin/python ]; then
    PY=.venv/bin/python
else
    PY=python3
fi
if [ "$DEVICE" = cuda ] && ! "$PY" -c 'import torch, sys; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
    echo "error: no CUDA device visible to $PY; run on a GPU machine, or GPU_CHECK_DEVICE=cpu for a dry run" >&2
    exit 2
fi
if [ "$DEVICE" = cuda ]; then  # the real sizes
    NET="--preset paper"; AMP="--amp"; BATCHES="6,max"; STEPS=20; SIZES="256,512,1024x768"
    REAL_STEPS=300; REAL_NET=""; REAL_PATCH=128; WORKERS=8; LOG_EVERY=50
else                           # a dry run: every command once, on the demo net
    NET="--preset demo"; AMP=""; BATCHES="2"; STEPS=1; SIZES="32,48x40"
    REAL_STEPS=3; REAL_NET="--preset demo"; REAL_PATCH=32; WORKERS=1; LOG_EVERY=1
fi
CAP_SCALE=${GPU_CHECK_CAP_SCALE:-$([ "$DEVICE" = cpu ] && echo 10 || echo 1)}  # a CPU compiles ~10x slower
[ -d "$DATA/Train/Denoise" ] && [ -f "$DATA/text_encoder/prompts.pt" ] || {
    echo "error: $DATA not found: run \`bash scripts/gpu_check.sh --prepare\` here and carry $DATA" >&2; exit 2; }

RESULTS=${OUT:-output/gpu_check}
WORK=$(mktemp -d /tmp/gpu_check.XXXXXX)
mkdir -p "$RESULTS"
START=$(date +%s)
BUDGET=${GPU_CHECK_BUDGET:-410}
FAILED=0
SUMMARY=""

# run_section NAME CAP_SECONDS COMMAND...: at most CAP seconds and never past the budget
run_section() {
    local name=$1 cap=$(($2 * CAP_SCALE))
    shift 2
    local left=$((BUDGET - ($(date +%s) - START)))
    local limit=$((cap < left ? cap : left))
    echo
    echo "=== $name (limit ${limit}s) ==="
    if [ "$left" -lt 15 ]; then
        echo "skipped: time budget spent"
        SUMMARY+="$name: skipped (budget)"$'\n'
        return
    fi
    local t0=$(date +%s)
    timeout --kill-after=10 "$limit" bash -c '"$@"' _ "$@"
    local rc=$?
    local dt=$(($(date +%s) - t0))
    if [ $rc -eq 0 ]; then
        SUMMARY+="$name: ok (${dt}s)"$'\n'
    else
        [ $rc -eq 124 ] && echo "timed out after ${limit}s"
        SUMMARY+="$name: FAILED rc=$rc (${dt}s)"$'\n'
        FAILED=$((FAILED + 1))
    fi
    printf "%s" "$SUMMARY" > "$RESULTS/summary.txt"
}

bench() { "$PY" bench.py --device "$DEVICE" $NET --no_flops "$@"; }

training() {
    local official=()
    [ -n "${OFFICIAL:-}" ] && official=(--official "$OFFICIAL")
    bench $AMP --impl auto --no_infer --train_batch "$BATCHES" --train_steps $STEPS \
        --out "$RESULTS/train_eager.json" || return 1
    bench $AMP --impl auto --no_infer --train_batch "$BATCHES" --train_steps $STEPS --compile --cuda_graph \
        --out "$RESULTS/train_compiled.json" || return 1
    if [ ${#official[@]} -gt 0 ]; then  # the official code at its own defaults: fp32, batch 6
        bench --impl auto --no_infer --train_batch 6 --train_steps $STEPS "${official[@]}" \
            --out "$RESULTS/train_official.json"
    fi
}

real_run() {
    "$PY" -m utils.demo_data --out "$WORK/demo" >/dev/null || return 1
    mkdir -p "$WORK/train" "$WORK/test/denoise"
    ln -s "$(pwd)/$DATA/Train/Denoise" "$WORK/train/Denoise"
    ln -s "$WORK/demo/Train/Derain" "$WORK/train/Derain"
    ln -s "$WORK/demo/Train/Dehaze" "$WORK/train/Dehaze"
    ln -s "$(pwd)/$DATA/test/denoise/Kodak24" "$WORK/test/denoise/Kodak24"
    local precision=()
    [ "$DEVICE" = cpu ] && precision=(--precision fp32)
    { "$PY" -m torch.distributed.run --standalone --nproc_per_node=1 train.py $REAL_NET --data_root "$WORK/train" \
        --text_ckpt "$DATA/text_encoder" --device "$DEVICE" --max_steps $REAL_STEPS --patch_size $REAL_PATCH \
        --num_workers $WORKERS --compile --cuda_graph --log_every $LOG_EVERY --val_every 0 --save_every 0 \
        --name gpu_real --ckpt_dir "$WORK/ckpt" --log_dir "$WORK/logs" "${precision[@]}" 2>&1 \
      && "$PY" test.py --ckpt "$WORK/ckpt/gpu_real/last.pt" --test_root "$WORK/test" --mode denoise \
        --device "$DEVICE" --name kodak --output_dir "$WORK/out" --no_progress 2>&1 \
      && "$PY" test.py --ckpt "$WORK/ckpt/gpu_real/last.pt" --test_root "$WORK/demo/test" \
        --device "$DEVICE" --name demo --output_dir "$WORK/out" --no_progress 2>&1; } | tee "$RESULTS/real_run.txt"
    return "${PIPESTATUS[0]}"
}

export -f bench training real_run
export PY DEVICE NET AMP BATCHES STEPS SIZES REAL_STEPS REAL_NET REAL_PATCH WORKERS LOG_EVERY RESULTS WORK DATA

echo "=== machine ==="
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>/dev/null || true
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda,
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")'

run_section "a. correctness (GPU path vs reference, compiled vs eager, training curves)" 120 \
    bench --check --out "$RESULTS/correctness.json"
run_section "b. training images/s (eager; compiled + CUDA graph)" 130 training
run_section "c. inference latency" 30 bench $AMP --impl auto --no_train --sizes "$SIZES" --out "$RESULTS/infer.json"
run_section "d. real run: torchrun train.py + test.py" 100 real_run
run_section "e. profile of a training step" 30 bench $AMP --impl auto --profile --train_batch 6 \
    --compile --cuda_graph --out "$RESULTS/profile.json"

echo
echo "=== summary ($(($(date +%s) - START))s) ==="
printf "%s" "$SUMMARY" | tee "$RESULTS/summary.txt"
rm -rf "$WORK"
exit $FAILED
