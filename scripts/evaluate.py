"""Evaluates a saved MMGA model: rank-1/5/10, mAP, mINP (`keras-mmga evaluate`).

A thin wrapper over keras_mmga.cli.evaluate: `python scripts/evaluate.py --help` lists the flags.
"""

import sys

from keras_mmga.cli import run_script

if __name__ == "__main__":
    sys.exit(run_script("evaluate"))
