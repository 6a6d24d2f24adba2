"""Inference images/s at 384x128: Keras predict, ONNX Runtime of the MMGA export, and of a
plain ResNet50-last-stride-1 feature extractor (GAP + L2 normalisation), batch 1 and 32.

Usage:
    python benchmarks/bench_inference.py [--variant mmga] [--seconds 20]
"""

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf2onnx  # noqa: E402

from keras_mmga import MMGA  # noqa: E402
from keras_mmga.export import export_onnx  # noqa: E402
from keras_mmga.models.backbone import build_resnet50_stages  # noqa: E402

SHAPE = (384, 128, 3)


def rate(fn, batch, seconds):
    x = np.random.RandomState(0).uniform(0, 255, (batch,) + SHAPE).astype(np.float32)
    fn(x)  # warm-up
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn(x)
        n += batch
    return n / (time.perf_counter() - start)


def plain_resnet_onnx(path):
    stages = build_resnet50_stages(SHAPE, weights=None)

    @tf.function(input_signature=[tf.TensorSpec((None,) + SHAPE, tf.float32, name="images")])
    def features(images):
        x = tf.gather(images, [2, 1, 0], axis=-1) - tf.constant([103.939, 116.779, 123.68])
        x = stages["stage4"](stages["stage3"](stages["stem"](x)))
        return {"features": tf.math.l2_normalize(tf.reduce_mean(x, axis=(1, 2)), axis=-1)}

    tf2onnx.convert.from_function(features, input_signature=features.input_signature, opset=17, output_path=path)
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="mmga")
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp()
    model = MMGA(751, variant=args.variant, input_shape=SHAPE, backbone_weights=None)
    mmga_onnx = export_onnx(model, os.path.join(tmp, "mmga.onnx"), write_card=False)["onnx_path"]
    plain = plain_resnet_onnx(os.path.join(tmp, "plain.onnx"))
    sessions = {name: ort.InferenceSession(p, providers=["CPUExecutionProvider"]) for name, p in
                (("mmga", mmga_onnx), ("plain", plain))}
    print(f"| batch | Keras predict ({args.variant}) | ONNX Runtime ({args.variant}) | ONNX Runtime (plain ResNet50-LS1) |")
    print("|---|---|---|---|")
    for batch in (1, 32):
        keras_rate = rate(lambda x: model.predict(x, batch_size=batch, verbose=0), batch, args.seconds)
        ort_rate = rate(lambda x: sessions["mmga"].run(["features"], {"images": x}), batch, args.seconds)
        plain_rate = rate(lambda x: sessions["plain"].run(None, {"images": x}), batch, args.seconds)
        print(f"| {batch} | {keras_rate:.1f} | {ort_rate:.1f} | {plain_rate:.1f} |")


if __name__ == "__main__":
    keras.utils.set_random_seed(0)
    main()
