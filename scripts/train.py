"""Trains an MMGA variant on a Market-1501 / DukeMTMC-reID layout dataset (`keras-mmga train`).

A thin wrapper over keras_mmga.cli.train: `python scripts/train.py --help` lists the flags.
"""

import sys

from keras_mmga.cli import run_script

if __name__ == "__main__":
    sys.exit(run_script("train"))
