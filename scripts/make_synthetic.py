"""Writes the embedded synthetic re-ID dataset (`keras-mmga synthetic`).

A thin wrapper over keras_mmga.cli.synthetic: `python scripts/make_synthetic.py --help` lists the flags.
"""

import sys

from keras_mmga.cli import run_script

if __name__ == "__main__":
    sys.exit(run_script("synthetic"))
