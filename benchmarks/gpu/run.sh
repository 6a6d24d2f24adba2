#!/usr/bin/env bash
# Runs the GPU benchmark on the GPU machine (no TensorFlow, no registry):
# installs the carried wheels (benchmarks/gpu/wheels/, made by fetch_wheels.sh)
# that the machine lacks into a scratch folder put on PYTHONPATH, then runs
# bench_gpu.py with KERAS_BACKEND=jax. Extra arguments go to bench_gpu.py.
# bench_gpu.json and bench_gpu.log go to $OUT when set (the device tool brings
# that folder back), else to benchmarks/gpu/.
#
# Usage: bash benchmarks/gpu/run.sh [bench_gpu.py arguments]
#   PYTHON=python3  interpreter with PyTorch and JAX     WHEELS=...  wheel folder (default benchmarks/gpu/wheels)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$repo"
PYTHON="${PYTHON:-python3}"
WHEELS="${WHEELS:-$here/wheels}"
site="$(mktemp -d "${TMPDIR:-/tmp}/keras-mmga-site.XXXXXX")"
out_dir="${OUT:-$here}"
mkdir -p "$out_dir"

"$PYTHON" "$here/install_wheels.py" "$WHEELS" "$site"
export PYTHONPATH="$site:$repo${PYTHONPATH:+:$PYTHONPATH}"
export KERAS_BACKEND=jax
{ command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; } || true
set +e
"$PYTHON" "$here/bench_gpu.py" --out "$out_dir/bench_gpu.json" "$@" 2>&1 | tee "$out_dir/bench_gpu.log"
status=${PIPESTATUS[0]}
set -e
rm -rf "$site"
exit "$status"
