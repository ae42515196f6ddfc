#!/usr/bin/env bash
# The GPU check of vidinv: the CUDA tests, then the throughput table, on one CUDA GPU, in <= 8 minutes.
#
#   bash benchmarks/gpu_check.sh [--out DIR] [--python PY]
#
#   --out DIR    where the logs and the markdown table go (default: $OUT when set, else benchmarks/results)
#   --python PY  the Python with vidinv and its test extra installed (default: $PYTHON, else .venv/bin/python
#                when present, else python3)
#
# 1. Fails fast (exit 2, one line) without nvidia-smi, a GPU it lists, torch.cuda, or ../shared (test data).
# 2. Prints the GPU (name, driver, memory) and the torch / CUDA / cuDNN versions.
# 3. The CUDA tests: tests/test_cuda.py (fp32 parity with the fixtures, fp16/bf16 against fp32, batch
#    1/8/32, vidinv edit --device cuda end to end) and tests/test_stylegan2.py::test_cuda_matches_cpu.
#    Log: DIR/gpu_tests.log.
# 4. benchmarks/edit_throughput.py on ../shared/videos/crowd_1080p.mp4 (1920x1080, 105 frames) at the
#    official 1024 configuration: batch 1/8/32 x fp32/fp16/bf16, 16 frames a row (32 at batch 32); per-stage
#    and end-to-end frames/s, peak RSS and peak GPU memory. Table: DIR/gpu_table.md (rewritten after every
#    row; paste it into the README), log DIR/gpu_throughput.log.
# Exit status: 0 when both parts passed, 1 when one failed (the other still runs), 2 when nothing could run.
#
# Time budget (H200-class GPU, 16 CPU cores; nothing here has been timed on a GPU yet):
#  * tests: fill.py weights for the 1024 generator, Feature-Style encoder and pSp (~415 M values, ~10 s on
#    one core, measured on the CPU), a handful of 1024 passes in fp32 and under autocast (~0.1 s each at
#    ~20 % of the GPU's fp32 peak), 41 single + 41 batched 1024 edits for batch 1/8/32 (~5 s), pSp (~10 s),
#    and four `vidinv edit` runs of 25 frames of a 512x512 clip on the tiny bundle (one on the CPU: ~45 s on
#    2 shared cores here; the CUDA ones reuse its dlib detections: ~10 s each) -> ~2 min; hard limit 260 s.
#  * throughput: 3 x (16 + 16 + 32) frames + 3 warm-ups of 2 = 198 frames through dlib detection on 1080p
#    frames, alignment, the confidence gate, blending and H.264 encoding on the CPU (guess: ~0.3 s a frame,
#    the bottleneck) and the encoder + generator on the GPU (~0.05 s a face), plus ~3 s a row to load the
#    networks -> ~90 s, plus ~15 s to write the fill.py bundle and ~10 s of imports. A row whose predicted
#    end (its frames x the slowest s/frame so far) is past 160 s is skipped (the table says so); hard
#    limit 200 s.
#  * checks and version prints: ~10 s.  Worst case (the hard limits): 10 + 260 + 200 = 470 s < 8 min;
#    expected ~4 min.
set -euo pipefail

die() { echo "gpu_check: error: $*" >&2; exit 2; }

cd "$(dirname "$0")/.."
REPO=$(pwd)
OUT_DIR=${OUT:-$REPO/benchmarks/results}
PY=${PYTHON:-}
while [[ $# -gt 0 ]]; do
  case "$1" in
    --out) [[ $# -ge 2 ]] || die "--out needs a folder"; OUT_DIR=$2; shift 2 ;;
    --python) [[ $# -ge 2 ]] || die "--python needs a path"; PY=$2; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done
if [[ -z "$PY" ]]; then
  if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi
command -v "$PY" >/dev/null 2>&1 || die "no Python at '$PY' (--python PY or PYTHON=...)"

# --- 1. a CUDA GPU, or stop here
command -v nvidia-smi >/dev/null 2>&1 || die "nvidia-smi not found: no NVIDIA driver on this machine (this check needs a CUDA GPU)"
GPUS=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null) \
  || die "nvidia-smi found no usable GPU (driver not loaded?)"
[[ -n "$GPUS" ]] || die "nvidia-smi lists no GPU"
"$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 3)' 2>/dev/null \
  || die "torch.cuda.is_available() is False in $PY (a CPU-only torch build, or no GPU visible: CUDA_VISIBLE_DEVICES?)"
SHARED="$REPO/../shared"
# The device machine of this project copies shared/ into the repository root; the tests read ../shared.
if [[ ! -d "$SHARED" && -d "$REPO/shared/parity" ]]; then
  ln -s "$REPO/shared" "$SHARED" || die "cannot link $SHARED -> $REPO/shared (the tests read ../shared)"
fi
CLIP="$SHARED/videos/crowd_1080p.mp4"
[[ -f "$CLIP" && -d "$SHARED/parity" ]] || die "test data not found: expected $CLIP and $SHARED/parity (../shared beside the repository)"
mkdir -p "$OUT_DIR"

# --- 2. what runs
echo "== GPU: $GPUS"
"$PY" - <<'EOF'
import platform, torch
p = torch.cuda.get_device_properties(0)
print(f"== torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, "
      f"python {platform.python_version()}; device 0: {p.name}, {p.total_memory / 2**30:.0f} GiB, "
      f"compute capability {p.major}.{p.minor}, bf16 supported: {torch.cuda.is_bf16_supported()}")
EOF

STATUS=0
# --- 3. the CUDA tests (-n 0: one process, one GPU context; -rfEsP: failures, skips and the printed errors)
echo "== CUDA tests (log: $OUT_DIR/gpu_tests.log)"
T0=$SECONDS
if timeout -k 5 260 "$PY" -m pytest -q -n 0 -p no:cacheprovider -rfEsP \
     tests/test_cuda.py "tests/test_stylegan2.py::test_cuda_matches_cpu" 2>&1 | tee "$OUT_DIR/gpu_tests.log"; then
  echo "== CUDA tests: pytest exited 0 in $((SECONDS - T0)) s"
else
  echo "== CUDA tests FAILED (or timed out) after $((SECONDS - T0)) s"; STATUS=1
fi
if grep -q "^SKIPPED" "$OUT_DIR/gpu_tests.log"; then  # on a GPU machine a skip means a check did not run
  echo "== CUDA tests: some were SKIPPED (see the SKIPPED lines above): counted as a failure"; STATUS=1
fi

# --- 4. the throughput table
echo "== throughput on $(basename "$CLIP") at 1024 (log: $OUT_DIR/gpu_throughput.log)"
T0=$SECONDS
if timeout -k 5 200 "$PY" benchmarks/edit_throughput.py --device cuda --precisions fp32 fp16 bf16 \
     --video "$CLIP" --frames 16 --batch-sizes 1 8 32 --budget-s 160 \
     --markdown "$OUT_DIR/gpu_table.md" 2>&1 | tee "$OUT_DIR/gpu_throughput.log"; then
  echo "== throughput table in $((SECONDS - T0)) s: $OUT_DIR/gpu_table.md"
else
  echo "== throughput FAILED (or timed out) after $((SECONDS - T0)) s"; STATUS=1
fi
echo "== done in $SECONDS s, status $STATUS"
exit $STATUS
