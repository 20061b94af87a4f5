#!/usr/bin/env bash
# One short run on a GPU machine that checks issue 11's device and dtype work end to end.
#
# Run from the repository root, with the carried wheels in .whl/ and $OUT set (results go there):
#
#   OUT=/tmp/out bash benchmarks/gpu_check.sh
#
# Steps (each under its own timeout, and all within GPU_CHECK_BUDGET = 470 s; a failed step does not
# stop the later ones):
#   1. install the carried wheels into /tmp/site (lensft itself runs from the source tree);
#   2. print the GPU, torch and transformers versions ($OUT/env.log);
#   3. the device tests: tests/test_gpu.py (on CUDA here), tests/test_devices.py and
#      tests/test_attention_probes.py ($OUT/pytest.log, $OUT/pytest.xml); no -x, so one failure
#      does not hide the others (--maxfail stops a cascade);
#   4. benchmarks/bench_gpu.py on a synthetic 1B bf16 triple ($OUT/bench_gpu.log, .json);
#   5. benchmarks/bench_attention.py on CUDA in bf16 at 4k and 16k tokens: streamed statistics
#      (lensft, lensft+sdpa) vs plain sdpa, and HF eager attention as an entropy cross-check
#      ($OUT/bench_attention.log, .json).
# Exit status: 0 when every step passed, else the number of failed steps. $OUT/summary.txt
# lists each step's exit status and wall time (124: timed out).
#
# Knobs for a dry run without a GPU: GPU_CHECK_DEVICE=cpu (benchmarks run tiny shapes on the CPU),
# GPU_CHECK_SKIP_INSTALL=1, GPU_CHECK_SITE (install target, default /tmp/site), GPU_CHECK_BUDGET
# (seconds for the whole script, default 470: a step never runs past it), GPU_CHECK_SCALE (multiplies
# every timeout and the budget), PYTHON (default python3).
set -uo pipefail

OUT=${OUT:?set OUT to the directory the results go to}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PY=${PYTHON:-python3}
SITE=${GPU_CHECK_SITE:-/tmp/site}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
SCALE=${GPU_CHECK_SCALE:-1}
BUDGET=$(( ${GPU_CHECK_BUDGET:-470} * SCALE ))
FAILED=0
T_START=$(date +%s)
: > "$OUT/summary.txt"

# step NAME TIMEOUT_S LOG CMD...: run CMD under timeout, tee its output to LOG, record status and time.
step() {
    local name=$1 limit=$2 log=$3
    shift 3
    limit=$(( limit * SCALE ))
    local t0 rc left
    t0=$(date +%s)
    left=$(( BUDGET - (t0 - T_START) - 15 ))  # the whole script stays within BUDGET seconds
    if [ "$left" -lt 20 ]; then
        printf '%-16s skipped: the %ss budget is spent\n' "$name" "$BUDGET" | tee -a "$OUT/summary.txt"
        FAILED=$((FAILED + 1))
        return 0
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo "=== $name (timeout ${limit}s): $*" | tee -a "$log"
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$log"
    rc=${PIPESTATUS[0]}
    local line
    line=$(printf '%-16s rc=%-4s %4ss  (at %ss)' "$name" "$rc" "$(( $(date +%s) - t0 ))" "$(( $(date +%s) - T_START ))")
    echo "$line" | tee -a "$OUT/summary.txt"
    if [ "$rc" -ne 0 ]; then FAILED=$((FAILED + 1)); fi
    return 0
}

# ---- 1. carried wheels (pydantic, plotly, nnsight, transformers 5.24, rouge_score, nltk, beartype ...)
if [ -z "${GPU_CHECK_SKIP_INSTALL:-}" ]; then
    step install 60 "$OUT/install.log" \
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl
fi
export PYTHONPATH=$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}
# transformers 5.24 from the wheels checks its dependencies' versions on import (huggingface_hub,
# tokenizers, safetensors); if the machine's are too old, fall back to the preinstalled transformers.
if [ -d "$SITE/transformers" ] && ! "$PY" -c "import transformers" >> "$OUT/install.log" 2>&1; then
    echo "transformers from the wheels does not import here (see install.log); using the preinstalled one" \
        | tee -a "$OUT/summary.txt"
    rm -rf "$SITE/transformers" "$SITE"/transformers-*.dist-info
fi

# ---- 2. environment
{
    echo "date: $(date -u +%FT%TZ)  git: $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
    timeout 30 nvidia-smi || echo "nvidia-smi: not available"
    timeout 40 "$PY" - <<'EOF' || echo "python environment check failed"
import importlib, sys
import torch, transformers
print("python", sys.version.split()[0], "| torch", torch.__version__, "cuda", torch.version.cuda,
      "| transformers", transformers.__version__, "from", transformers.__file__)
print("cuda available:", torch.cuda.is_available(), "| devices:",
      [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())])
if torch.cuda.is_available():
    free, total = torch.cuda.mem_get_info(0)
    print(f"cuda:0 free {free / 1e9:.1f} GB of {total / 1e9:.1f} GB; bf16 supported: {torch.cuda.is_bf16_supported()}")
for m in ("lensft", "pydantic", "plotly", "beartype", "jaxtyping", "huggingface_hub", "tokenizers", "safetensors",
          "accelerate", "nnsight", "rouge_score.rouge_scorer", "nltk", "absl", "six", "cloudpickle", "httpx",
          "lensft.cli.app", "transformer_lens", "lm_eval", "ray", "gguf"):
    try:
        mod = importlib.import_module(m)
        print(f"  {m:16s} {getattr(mod, '__version__', '?')}")
    except Exception as e:  # noqa: BLE001 - report and go on
        print(f"  {m:16s} missing ({type(e).__name__}: {str(e)[:100]})")
EOF
} 2>&1 | tee "$OUT/env.log"

# ---- 3. device tests. pyproject's addopts ask for jaxtyping's pytest plugin (runtime shape checks
# with beartype); if it cannot load here, run without it rather than not at all.
PYTEST_OPTS=()
if ! "$PY" - <<'EOF' >/dev/null 2>&1
import importlib.metadata as md
eps = [e for e in md.entry_points(group="pytest11") if e.name == "jaxtyping"]
assert eps, "no jaxtyping pytest plugin"
eps[0].load()
import beartype  # noqa: F401  (the typechecker the addopts name)
EOF
then
    echo "jaxtyping's pytest plugin or beartype is missing: running without runtime shape checks" | tee -a "$OUT/pytest.log"
    PYTEST_OPTS=(-o "addopts=-ra --strict-markers")
fi
# transformer_lens is not installed on the device machine: its comparison tests are deselected.
step pytest 100 "$OUT/pytest.log" \
    "$PY" -m pytest -q -p no:cacheprovider "${PYTEST_OPTS[@]}" -rfEs --maxfail=25 --durations=15 \
    --junitxml="$OUT/pytest.xml" -W ignore::FutureWarning -k "not transformer_lens" \
    tests/test_gpu.py tests/test_devices.py tests/test_attention_probes.py

# ---- 4. the study's probes on a synthetic bf16 triple, on a variant and a graft (1B shape on a GPU;
# on the CPU a tiny shape and short inputs, only to check the command)
if [ "$DEVICE" = cpu ]; then
    GPU_BENCH=(--synthetic tiny --probes attention_spread ffn_activations --spread-tokens 256 --spread-prompts 2)
else
    GPU_BENCH=(--synthetic 1b --probes attention_spread ffn_activations short_tasks retrieval_heads
               --spread-tokens 4096 --spread-prompts 4)
fi
step bench_gpu 75 "$OUT/bench_gpu.log" \
    "$PY" benchmarks/bench_gpu.py --device "$DEVICE" --dtype bfloat16 "${GPU_BENCH[@]}" \
    --models short short+long.mha --batch-size 8 --json "$OUT/bench_gpu.json"

# ---- 5. streamed attention statistics vs sdpa (and eager, for the entropy) at 4k and 16k tokens
if [ "$DEVICE" = cpu ]; then
    ATTN_SHAPE=(--hidden 64 --layers 2 --heads 4 --kv-heads 2 --inter 128 --vocab 512 --lengths 256 512 --repeats 1)
else  # Llama-3.2-1B layer shapes, 4 layers
    ATTN_SHAPE=(--hidden 2048 --layers 4 --heads 32 --kv-heads 8 --inter 8192 --vocab 32000 --lengths 4096 16384 --repeats 2)
fi
step bench_attention 60 "$OUT/bench_attention.log" \
    "$PY" benchmarks/bench_attention.py --device "$DEVICE" --dtype bfloat16 "${ATTN_SHAPE[@]}" \
    --methods sdpa lensft lensft+sdpa hf_eager --time-cap 25 --budget 50 --json "$OUT/bench_attention.json"

echo "total $(( $(date +%s) - T_START ))s; failed steps: $FAILED" | tee -a "$OUT/summary.txt"
exit "$FAILED"
