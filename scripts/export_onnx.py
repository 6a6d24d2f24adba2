"""Exports a trained MMGA (.keras) to ONNX: image in, L2-normalised feature out.

Writes NAME.onnx and its model card NAME.json, after checking the graph
(onnx.checker, nothing but the feature path) and comparing ONNX Runtime with
Keras on random, synthetic-person and (with --images) real images. Exits with
status 1 if they differ by more than 1e-4 (1e-2 with --fp16), and with status 2
and a one-line message for a missing or invalid model, output path, opset or
--images (the images are checked before the conversion).

Example:
    python scripts/export_onnx.py runs/market_mmga/best.keras --output exported/mmga_market.onnx \
        --images Market-1501/query/0001_c1s1_001051_00.jpg
"""

import argparse
import os
import sys

from keras_mmga.deploy import IMAGE_SUFFIXES, read_image
from keras_mmga.export import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET, ParityError, export_onnx


def _image_paths(items):
    """The --images files (a folder: its first 8 images), each checked to decode.

    Checked up front so that a typo fails in a second, not after the
    minutes-long conversion; an empty folder is an error rather than a parity
    check silently run without the real images asked for.
    """
    paths = []
    for item in items or []:
        if os.path.isdir(item):  # a folder: its first few images are enough for a parity check
            found = sorted(os.path.join(item, f) for f in os.listdir(item) if f.lower().endswith(IMAGE_SUFFIXES))[:8]
            if not found:
                raise ValueError(f"--images folder {item!r} has no images ({', '.join(IMAGE_SUFFIXES)}).")
            paths += found
        elif os.path.exists(item):
            paths.append(item)
        else:
            raise FileNotFoundError(f"--images: no such file or folder: {item!r}.")
    for path in paths:
        read_image(path)  # FileNotFoundError / ValueError naming the file
    return paths or None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", help="a .keras file written by training")
    p.add_argument("--output", help="the .onnx file (default: exported/<model name>.onnx)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"{MIN_OPSET}..{MAX_OPSET} (default {DEFAULT_OPSET})")
    p.add_argument("--nchw", action="store_true", help="(N, 3, H, W) input instead of (N, H, W, 3)")
    p.add_argument("--fp16", action="store_true", help="float16 weights and activations (float32 input/output)")
    p.add_argument("--images", nargs="*", help="real images (files or folders) added to the parity check")
    a = p.parse_args(argv)
    output = a.output or os.path.join("exported", os.path.splitext(os.path.basename(a.model))[0] + ".onnx")
    try:
        images = _image_paths(a.images)
        result = export_onnx(a.model, output, opset=a.opset, nchw=a.nchw, fp16=a.fp16, parity_images=images)
    except ParityError as e:
        print(f"export failed: {e}", file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError) as err:
        # Pre-flight problems (model, output, opset, images): the message says it all.
        print(f"error: {err}", file=sys.stderr)
        return 2
    card = result["card"]
    print(f"wrote {result['onnx_path']} ({result['num_nodes']} nodes) and {result['card_path']}")
    print(f"input images {card['input']['shape']} float32 RGB [0, 255] -> features {card['output']['shape']}")
    print(f"max |ONNX Runtime - Keras| = {result['max_abs_diff']:.3e} over {card['parity']['images']} images "
          f"(tolerance {card['parity']['tolerance']:g})")
    problems = card["tensorrt"]["problems"]
    print("TensorRT parser: " + ("ready" if not problems else "; ".join(problems)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
