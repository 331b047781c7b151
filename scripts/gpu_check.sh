#!/usr/bin/env bash
# One short GPU check (issue 7), under 8 minutes on one H100:
#   1. CUDA correctness: fast vs reference (fp32, TF32 off), bf16 autocast vs fp32,
#      torch.compile vs eager; forward FLOPs per image;
#   2. bench.py on the GPU: bf16 latency / peak memory per size, training images/s;
#   3. a 1-GPU torchrun smoke test of train.py (demo preset, plain Restormer: the
#      instruction encoder package is not needed) and test.py on its checkpoint;
#   4. bench.py with --compile (bf16) in the time that is left;
#   5. a roofline estimate: achieved TFLOP/s against the card's bf16 dense peak.
# Results land in $OUT (when set) or output/gpu_check/. Sections run under a shared time
# budget (GPU_CHECK_BUDGET seconds, default 450); a section that fails does not stop the
# others, and the exit status is the number of failed sections.
#
#   bash scripts/gpu_check.sh            # PYTHON=... to pick the interpreter
set -u -o pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1

if [ -n "${PYTHON:-}" ]; then
    PY=$PYTHON
elif [ -x .venv/bin/python ] && .venv/bin/python -c 'import torch, sys; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
    PY=.venv/bin/python
else
    PY=python3
fi
if ! "$PY" -c 'import torch, sys; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
    echo "error: no CUDA device visible to $PY; run scripts/gpu_check.sh on a machine where nvidia-smi lists a GPU (or set PYTHON)" >&2
    exit 2
fi

RESULTS=${OUT:-output/gpu_check}
WORK=$(mktemp -d /tmp/gpu_check.XXXXXX)
mkdir -p "$RESULTS"
START=$(date +%s)
BUDGET=${GPU_CHECK_BUDGET:-450}
FAILED=0
SUMMARY=""

# run_section NAME CAP_SECONDS COMMAND...: at most CAP seconds and never past the budget
run_section() {
    local name=$1 cap=$2
    shift 2
    local left=$((BUDGET - ($(date +%s) - START)))
    local limit=$((cap < left ? cap : left))
    echo
    echo "=== $name (limit ${limit}s) ==="
    if [ "$left" -lt 20 ]; then
        echo "skipped: time budget spent"
        SUMMARY+="$name: skipped (budget)"$'\n'
        return
    fi
    local t0=$(date +%s)
    timeout --kill-after=10 "$limit" bash -c '"$@"' _ "$@"  # bash -c: sections may be functions
    local rc=$?
    local dt=$(($(date +%s) - t0))
    if [ $rc -eq 0 ]; then
        SUMMARY+="$name: ok (${dt}s)"$'\n'
    else
        [ $rc -eq 124 ] && echo "timed out after ${limit}s"
        SUMMARY+="$name: FAILED rc=$rc (${dt}s)"$'\n'
        FAILED=$((FAILED + 1))
    fi
}

echo "=== machine ==="
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>/dev/null || true
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))'

correctness() {
    "$PY" - "$RESULTS/correctness.json" <<'EOF'
import json, sys, time
import torch
from torch.utils.flop_counter import FlopCounterMode
from net.model import TextPromptIR

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False  # fp32 comparisons must be fp32
dev = torch.device("cuda")
torch.manual_seed(0)
model = TextPromptIR(text_dim=384).to(dev)
with torch.no_grad():  # random, non-default weights (as tests/test_fast_path.py)
    for name, p in model.named_parameters():
        if name.endswith("temperature"):
            p.copy_(0.2 + 3 * torch.rand_like(p))
        elif p.dim() == 1:
            p.add_(0.5 * torch.randn_like(p))
x, text = torch.rand(2, 3, 128, 128, device=dev), torch.randn(2, 384, device=dev)
res = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__}

def run(impl, amp=False, net=None):
    model.set_impl(impl)
    model.zero_grad(set_to_none=True)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
        out = (model if net is None else net)(x, text)
    out.float().square().mean().backward()
    grads = torch.cat([p.grad.flatten().float() for p in model.parameters()])
    return out.detach().float(), grads

ref, g_ref = run("reference")
fast, g_fast = run("fast")
res["fast_vs_reference_max_abs"] = (fast - ref).abs().max().item()
res["fast_vs_reference_grad_rel"] = ((g_fast - g_ref).abs().max() / g_ref.abs().max()).item()
bf, g_bf = run("fast", amp=True)
res["bf16_vs_fp32_max_abs"] = (bf - fast).abs().max().item()
res["bf16_vs_fp32_mean_abs"] = (bf - fast).abs().mean().item()
res["bf16_vs_fp32_grad_rel"] = ((g_bf - g_fast).norm() / g_fast.norm()).item()
model.set_impl("fast")
compiled = torch.compile(model)
t0 = time.time()
comp, g_comp = run("fast", net=compiled)
res["compile_s"] = time.time() - t0
res["compile_vs_eager_max_abs"] = (comp - fast).abs().max().item()
res["compile_vs_eager_grad_rel"] = ((g_comp - g_fast).abs().max() / g_fast.abs().max()).item()
for impl in ("reference", "fast"):
    model.set_impl(impl)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x[:1], text[:1])
    res[f"gflops_fwd_128_{impl}"] = counter.get_total_flops() / 1e9
print(json.dumps(res, indent=1))
json.dump(res, open(sys.argv[1], "w"), indent=1)
ok = (res["fast_vs_reference_max_abs"] <= 1e-4 and res["fast_vs_reference_grad_rel"] <= 1e-4
      and res["compile_vs_eager_max_abs"] <= 1e-4 and res["compile_vs_eager_grad_rel"] <= 1e-3
      and res["bf16_vs_fp32_mean_abs"] <= 5e-2)
print("correctness:", "ok" if ok else "MISMATCH (limits: 1e-4 fp32, 1e-4/1e-3 compile, 5e-2 bf16 mean)")
sys.exit(0 if ok else 1)
EOF
}

smoke_train() {
    "$PY" -m utils.demo_data --out data/demo >/dev/null || return 1
    "$PY" -m torch.distributed.run --standalone --nproc_per_node=1 train.py --preset demo --stage restore --text_cond none \
        --device cuda --epochs 1 --max_steps 40 --num_workers 4 --name gpu_smoke \
        --ckpt_dir "$WORK/ckpt" --log_dir "$WORK/logs" --no_progress
}

smoke_test() {
    "$PY" test.py --preset demo --ckpt "$WORK/ckpt/gpu_smoke/last.pt" --device cuda --amp \
        --name gpu_smoke --output_dir "$WORK/output" --no_progress
}

export PY RESULTS WORK
export -f correctness smoke_train smoke_test
run_section "correctness (fp32 / bf16 / compile)" 200 correctness
run_section "bench.py, bf16" 150 "$PY" bench.py --device cuda --amp --sizes 128,256,512,1024x768 \
    --out "$RESULTS/bench_cuda_bf16.json"
run_section "torchrun smoke test (train.py, 1 GPU)" 80 smoke_train
run_section "test.py on GPU" 40 smoke_test
run_section "bench.py, bf16 + compile (fast path)" 200 "$PY" bench.py --device cuda --amp --compile \
    --impl fast --sizes 256 --no_flops --train_steps 20 --out "$RESULTS/bench_cuda_bf16_compile.json"

echo
echo "=== roofline (training at 128^2: 3x forward FLOPs per image) ==="
"$PY" - "$RESULTS" <<'EOF'
import json, sys
from pathlib import Path
res = Path(sys.argv[1])
peaks = {"H200": 989e12, "H100 PCIe": 756e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12}
try:
    corr = json.loads((res / "correctness.json").read_text())
except (OSError, ValueError):
    sys.exit("no correctness.json: FLOPs unknown")
gpu = corr["gpu"]
peak = next((v for k, v in peaks.items() if k in gpu), None)
fwd = corr["gflops_fwd_128_fast"] * 1e9
print(f"{gpu}: forward {fwd / 1e9:.1f} GFLOP per 128x128 image (fast path; reference "
      f"{corr['gflops_fwd_128_reference']:.1f}); bf16 dense peak {peak / 1e12 if peak else float('nan'):.0f} TFLOP/s")
for name in ("bench_cuda_bf16.json", "bench_cuda_bf16_compile.json"):
    try:
        bench = json.loads((res / name).read_text())
    except (OSError, ValueError):
        continue
    for r in bench["train"]:
        if "images_per_s" in r:
            achieved = 3 * fwd * (r["size"] / 128) ** 2 * r["images_per_s"]
            frac = f", {100 * achieved / peak:.1f}% of peak" if peak else ""
            print(f"  {name}: train {r['impl']}: {r['images_per_s']:.1f} images/s -> {achieved / 1e12:.1f} TFLOP/s{frac}")
    for r in bench["inference"]:
        if "latency_ms" in r:
            h, w = r["size"]
            achieved = fwd * h * w / 128**2 / (r["latency_ms"] / 1e3)
            frac = f", {100 * achieved / peak:.1f}% of peak" if peak else ""
            mem = "n/a" if r.get("peak_mb") is None else f"{r['peak_mb']:.0f}"
            print(f"  {name}: infer {r['impl']} {h}x{w}: {r['latency_ms']:.1f} ms, "
                  f"{mem} MB -> {achieved / 1e12:.1f} TFLOP/s{frac}")
EOF

echo
echo "=== summary ($(($(date +%s) - START))s) ==="
printf "%s" "$SUMMARY"
rm -rf "$WORK"
exit $FAILED
