"""Finds the gallery images closest to query images with an exported ONNX model: `keras-mmga search`.

Example:
    python scripts/search.py Market-1501/query --gallery Market-1501/bounding_box_test \
        --model exported/mmga_market.onnx --index runs/market_gallery --topk 10
"""

import sys

from keras_mmga.cli import run_script


def main(argv=None):
    return run_script("search", argv)


if __name__ == "__main__":
    sys.exit(main())
