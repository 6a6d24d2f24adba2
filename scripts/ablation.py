"""Trains the five variants of the paper's Table 1 with one budget and seed (`keras-mmga ablation`).

A thin wrapper over keras_mmga.cli.ablation: `python scripts/ablation.py --help` lists the flags.
"""

import sys

from keras_mmga.cli import run_script

if __name__ == "__main__":
    sys.exit(run_script("ablation"))
