"""Installs the carried wheels this Python lacks into a folder for PYTHONPATH (run.sh, on the GPU machine).

Usage: python benchmarks/gpu/install_wheels.py WHEEL_DIR TARGET_DIR

Keras is always installed (the version the project tested); every other wheel
only when its distribution is not installed already, so the machine's own
NumPy, PyTorch and JAX stacks stay as they are. With pip:
`pip install --no-index --no-deps --target`; without pip the wheels are
unpacked (they are plain wheels without a .data folder: unpacking them is
installing them). Prints what it installed and what it left to the machine.
"""

import glob
import os
import re
import subprocess
import sys
import zipfile
from importlib import metadata

ALWAYS = {"keras"}


def _norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def _installed_version(name):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    wheel_dir, target = argv
    wheels = sorted(glob.glob(os.path.join(wheel_dir, "*.whl")))
    if not wheels:
        print(
            f"error: no wheels in {wheel_dir}: run benchmarks/gpu/fetch_wheels.sh first and carry the folder",
            file=sys.stderr,
        )
        return 2
    chosen = []
    for wheel in wheels:
        name, version = os.path.basename(wheel).split("-")[:2]
        have = _installed_version(name)
        if _norm(name) in ALWAYS or have is None:
            chosen.append(wheel)
            print(f"install {name} {version}" + (f" (over the machine's {have})" if have else ""))
        else:
            print(f"keep    {name} {have} (carried {version})")
    os.makedirs(target, exist_ok=True)
    has_pip = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True).returncode == 0
    if has_pip and chosen:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-index",
            "--no-deps",
            "--upgrade",
            "--disable-pip-version-check",
            "--no-warn-script-location",
            "--target",
            target,
            *chosen,
        ]
        return subprocess.run(cmd).returncode
    for wheel in chosen:
        with zipfile.ZipFile(wheel) as archive:
            if any(".data/" in member for member in archive.namelist()):
                print(f"error: {wheel} has a .data folder; it needs pip", file=sys.stderr)
                return 1
            archive.extractall(target)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
