"""Exports a trained MMGA (.keras) to ONNX (float32, --fp16 or --int8): `keras-mmga export`.

Example:
    python scripts/export_onnx.py --model runs/market_mmga/best.keras --output exported/mmga_market.onnx \
        --images Market-1501/query/0001_c1s1_001051_00.jpg
    python scripts/export_onnx.py --model runs/market_mmga/best.keras --int8 \
        --calibration Market-1501/bounding_box_train
"""

import sys

from keras_mmga.cli import run_script


def main(argv=None):
    return run_script("export", argv)


if __name__ == "__main__":
    sys.exit(main())
