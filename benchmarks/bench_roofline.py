"""Arithmetic bounds on this machine: the float32 matrix-product peak, the model's FLOPs per
image, and what they allow for inference (images/s) and Market-scale evaluation (seconds).

Inference and evaluation are both dominated by float32 multiply-adds (convolutions run as
GEMMs or direct NCHWc kernels; the query × gallery distances are one GEMM), so no float32
engine can beat `FLOPs / peak`. This script measures the peak with the best of several large
square products (TensorFlow/oneDNN and NumPy/BLAS), counts the model's FLOPs with
TensorFlow's profiler on the frozen inference graph (independent of the model code), and
prints the bounds. Pass measured figures (`--keras-ips`, `--export-ips` from
`bench_inference.py`) to see the fraction of the peak they reach and what a target needs.

Usage:
    python benchmarks/bench_roofline.py [--keras-ips 15.1 --export-ips 17.2 --speedup 1.3]
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.python.framework.convert_to_constants import (  # noqa: E402
    convert_variables_to_constants_v2,
)

from keras_mmga import MMGA  # noqa: E402

MARKET_QUERIES, MARKET_GALLERY, FEATURE_DIM = 3368, 15913, 2048


def best_seconds(fn, repeats):
    fn()  # warm-up: thread pools, kernel selection
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def gemm_peak(n, repeats):
    """Best float32 GFLOP/s of an n×n×n product, TensorFlow and NumPy."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    ta, tb = tf.constant(a), tf.constant(b)
    flops = 2.0 * n**3
    return {
        "TensorFlow (oneDNN)": flops / best_seconds(lambda: tf.matmul(ta, tb).numpy(), repeats) / 1e9,
        "NumPy (BLAS)": flops / best_seconds(lambda: a @ b, repeats) / 1e9,
    }


def inference_gflops(variant, height, width):
    """(conv + matmul, all ops) GFLOP per image of the inference graph, by TensorFlow's profiler."""
    model = MMGA(751, variant=variant, input_shape=(height, width, 3), backbone_weights=None)
    spec = tf.TensorSpec((1, height, width, 3), tf.float32)
    concrete = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    graph_def = convert_variables_to_constants_v2(concrete).graph.as_graph_def()
    with tf.Graph().as_default() as graph:
        tf.graph_util.import_graph_def(graph_def, name="")
        options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
        options["output"] = "none"
        total = tf.compat.v1.profiler.profile(graph, options=options).total_float_ops
        options["account_type_regexes"] = ["Conv2D", "MatMul"]
        products = tf.compat.v1.profiler.profile(graph, options=options).total_float_ops
    return products / 1e9, total / 1e9


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="mmga")
    parser.add_argument("--height", type=int, default=384)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--gemm-size", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=5, help="best of N")
    parser.add_argument("--keras-ips", type=float, help="measured Keras predict images/s")
    parser.add_argument("--export-ips", type=float, help="measured ONNX Runtime images/s of the export")
    parser.add_argument("--speedup", type=float, default=1.3, help="target export / Keras ratio")
    parser.add_argument("--eval-seconds", type=float, default=1.0, help="evaluation target (s)")
    args = parser.parse_args()

    peaks = gemm_peak(args.gemm_size, args.repeats)
    peak = max(peaks.values())
    n = args.gemm_size
    print(f"float32 GEMM {n}x{n}x{n}, best of {args.repeats}:")
    for engine, gflops in peaks.items():
        print(f"  {engine:22s} {gflops:7.1f} GFLOP/s")

    products, total = inference_gflops(args.variant, args.height, args.width)
    print(
        f"\n{args.variant} inference at {args.height}x{args.width}: {products:.2f} GFLOP/image in "
        f"convolutions and matrix products ({total:.2f} with all ops; TensorFlow profiler)"
    )
    print(f"  float32 bound at {peak:.0f} GFLOP/s: {peak / products:.1f} images/s")
    for name, ips in (("Keras predict", args.keras_ips), ("ONNX Runtime export", args.export_ips)):
        if ips:
            print(
                f"  {name:20s} {ips:5.1f} images/s = {ips * products:5.0f} GFLOP/s "
                f"({ips * products / peak:.0%} of the peak)"
            )
    if args.keras_ips:
        need = args.speedup * args.keras_ips
        print(
            f"  {args.speedup}x Keras predict = {need:.1f} images/s needs {need * products:.0f} GFLOP/s "
            f"({need * products / peak:.0%} of the peak)"
        )

    eval_gflop = 2.0 * MARKET_QUERIES * MARKET_GALLERY * FEATURE_DIM / 1e9
    print(f"\nMarket-scale distances ({MARKET_QUERIES} x {MARKET_GALLERY} x {FEATURE_DIM}): {eval_gflop:.1f} GFLOP")
    print(
        f"  float32 bound at {peak:.0f} GFLOP/s: {eval_gflop / peak:.2f} s for the product alone "
        f"(target {args.eval_seconds:.2f} s for distances + metrics)"
    )


if __name__ == "__main__":
    main()
