#!/usr/bin/env bash
# The benchmark of issue 12 on an NVIDIA GPU, in one run: infkernel and
# neural-tangents on the same GPU, same inputs, K(X, X) with nngp and ntk in
# float32, seconds per workload and the ratio (see `infkernel bench --help`).
#
#   bash benchmarks/gpu.sh                      # every workload at its default n, plus cnn-flatten n=128
#   bash benchmarks/gpu.sh cnn-flatten myrtle5  # some workloads
#   bash benchmarks/gpu.sh fc-deep --rounds 3   # medians of 3 alternating rounds (noisy machines)
#
# Environment (all optional):
#   PYTHON       python 3.11+ used to create the venvs (default: python3)
#   GPU_VENV     venv of infkernel with a CUDA build of JAX (default: .venv-gpu in the checkout)
#   PEER_VENV    venv of neural-tangents 0.6.5 with jax[cuda12]==0.4.30 (default: .venv-nt-gpu)
#   PEER_DIR     folder of nt_bench.py and workloads.json (default: ../shared/peer beside the checkout)
#   TIMEOUT      seconds allowed per measurement (default: 1800)
#   NO_PEER=1    skip neural-tangents
#
# Needs an NVIDIA driver (nvidia-smi) for CUDA 12 and network access to PyPI.
# The first run builds both venvs (several GB of wheels); later runs reuse them.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
GPU_VENV="${GPU_VENV:-$ROOT/.venv-gpu}"
PEER_VENV="${PEER_VENV:-$ROOT/.venv-nt-gpu}"
PEER_DIR="${PEER_DIR:-$ROOT/../shared/peer}"
TIMEOUT="${TIMEOUT:-1800}"
say() { printf '== %s\n' "$*" >&2; }

command -v nvidia-smi >/dev/null || { echo "gpu.sh: no nvidia-smi: this script needs an NVIDIA GPU" >&2; exit 2; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >&2

if [ ! -x "$GPU_VENV/bin/python" ]; then
  say "building $GPU_VENV (infkernel + jax[cuda12])"
  "$PYTHON" -m venv "$GPU_VENV"
  "$GPU_VENV/bin/pip" install -q --upgrade pip
  "$GPU_VENV/bin/pip" install -q -e "$ROOT" "jax[cuda12]"
fi
"$GPU_VENV/bin/python" - <<'EOF'
import jax, sys
backend = jax.default_backend()
print(f"infkernel venv: jax {jax.__version__} on {backend}: {jax.devices()}", file=sys.stderr)
if backend != "gpu":
    sys.exit("gpu.sh: JAX does not see the GPU (check the driver and the jax[cuda12] install)")
EOF

PEER_ARGS=()
if [ -z "${NO_PEER:-}" ]; then
  if [ ! -f "$PEER_DIR/nt_bench.py" ]; then
    say "no $PEER_DIR/nt_bench.py: neural-tangents skipped (set PEER_DIR)"
  else
    if [ ! -x "$PEER_VENV/bin/python" ] || ! "$PEER_VENV/bin/python" -c "import neural_tangents" 2>/dev/null; then
      say "building $PEER_VENV (neural-tangents 0.6.5 + jax[cuda12]==0.4.30)"
      "$PYTHON" -m venv "$PEER_VENV"
      "$PEER_VENV/bin/pip" install -q "neural-tangents==0.6.5" "jax[cuda12]==0.4.30" "numpy<2" \
        "tensorflow-cpu==2.17.*" "tf2jax==0.3.6" || say "peer venv failed to build"
    fi
    if TF_CPP_MIN_LOG_LEVEL=3 "$PEER_VENV/bin/python" -c \
        "import jax, neural_tangents, sys; sys.exit(jax.default_backend() != 'gpu')" 2>/dev/null; then
      PEER_ARGS=(--peer "$PEER_VENV/bin/python")
    else
      say "neural-tangents does not run on the GPU in $PEER_VENV: infkernel alone"
    fi
  fi
fi

export INFKERNEL_PEER_DIR="$PEER_DIR"
export TF_CPP_MIN_LOG_LEVEL=3
cd "$ROOT"
BENCH=("$GPU_VENV/bin/python" -m infkernel.bench --timeout "$TIMEOUT" "${PEER_ARGS[@]}")
date -u +"%Y-%m-%d %H:%M UTC"
if [ "$#" -gt 0 ]; then
  "${BENCH[@]}" "$@"
else
  "${BENCH[@]}" fc-deep cnn-gap cnn-flatten myrtle5
  "${BENCH[@]}" --no-peaks cnn-flatten --n 128
fi
