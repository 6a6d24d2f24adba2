"""Makes body-part masks (LIP label PNGs) for a folder of person images.

Usage:
    python scripts/make_masks.py IMAGES_ROOT --output MASKS_ROOT [--pose-model PATH]
        [--workers N] [--overwrite] [--preview N]

Same as `keras-mmga masks`; see `keras_mmga/masks/`.
"""

import sys

from keras_mmga.cli import run_script

if __name__ == "__main__":
    sys.exit(run_script("masks"))
