"""`make demo`: synthetic data -> train -> evaluate -> pictures -> ONNX (`keras-mmga demo`).

A thin wrapper over keras_mmga.cli.demo: `python scripts/demo.py --help` lists the flags.
"""

import sys

from keras_mmga.cli import run_script

if __name__ == "__main__":
    sys.exit(run_script("demo"))
