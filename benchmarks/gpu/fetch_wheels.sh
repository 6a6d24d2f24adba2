#!/usr/bin/env bash
# Downloads, on a machine with registry access, the wheels the GPU machine lacks
# to run benchmarks/gpu/bench_gpu.py: Keras and every runtime dependency of it
# that is not already there (the GPU machine has NumPy and ml-dtypes with JAX),
# each pinned to the version installed in the project's environment, for
# CPython $PYVER on manylinux x86_64. They go to benchmarks/gpu/wheels/
# (git-ignored), which the device tool carries (64 MiB at most in all).
#
# Usage: benchmarks/gpu/fetch_wheels.sh
#   PYTHON=...  interpreter whose installed versions are pinned (default: .venv/bin/python, else python3)
#   PYVER=3.12  target CPython version     DEST=...  target folder (default benchmarks/gpu/wheels)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$repo/.venv/bin/python" ]]; then PYTHON="$repo/.venv/bin/python"; else PYTHON=python3; fi
fi
PYVER="${PYVER:-3.12}"
DEST="${DEST:-$here/wheels}"
# Present on the GPU machine (JAX needs them); not carried.
ON_GPU_MACHINE="${ON_GPU_MACHINE:-numpy ml-dtypes}"

# keras==X and its requirement closure, each pinned to the installed version.
mapfile -t pins < <("$PYTHON" - "$ON_GPU_MACHINE" <<'EOF'
import re, sys
from importlib import metadata

skip = {n.lower().replace("_", "-") for n in sys.argv[1].split()}
def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()

todo, seen = ["keras"], {}
while todo:
    name = norm(todo.pop())
    if name in seen or name in skip:
        continue
    dist = metadata.distribution(name)
    seen[name] = dist.version
    for req in dist.requires or []:
        if ";" in req and "extra ==" in req:
            continue  # optional extras
        todo.append(re.match(r"[A-Za-z0-9_.-]+", req).group(0))
for name, version in sorted(seen.items()):
    print(f"{name}=={version}")
EOF
)
echo "wheels for CPython $PYVER: ${pins[*]}"
rm -rf "$DEST"
mkdir -p "$DEST"
abi="cp${PYVER/./}"
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --dest "$DEST" \
    --python-version "$PYVER" --implementation cp --abi "$abi" --abi abi3 --abi none \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform any "${pins[@]}"
ls -l "$DEST"
du -sh "$DEST"
total=$(du -sb "$DEST" | cut -f1)
if (( total > 48 * 1024 * 1024 )); then
    echo "error: $DEST holds $total bytes; the device tool carries 64 MiB in all, with the repository" >&2
    exit 1
fi
