"""Exports a trained MMGA (.keras) to ONNX: image in, L2-normalised feature out."""

import argparse
import os

from keras_mmga.export import DEFAULT_OPSET, export_onnx


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("model", help="a .keras file")
    p.add_argument("--output", help="the .onnx file (default: exported/<model name>.onnx)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    p.add_argument("--nchw", action="store_true", help="(N, 3, H, W) input, as TensorRT pipelines often expect")
    p.add_argument("--fp16", action="store_true", help="half-precision weights")
    a = p.parse_args(argv)
    output = a.output or os.path.join("exported", os.path.splitext(os.path.basename(a.model))[0] + ".onnx")
    result = export_onnx(a.model, output, opset=a.opset, nchw=a.nchw, fp16=a.fp16)
    print(f"wrote {result['onnx_path']} and {result['card_path']}")
    print(f"max |ONNX Runtime - Keras| = {result['max_abs_diff']:.3e}")


if __name__ == "__main__":
    main()
