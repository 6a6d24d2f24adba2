"""Inference images/s at 384x128: Keras `predict` of MMGA, ONNX Runtime of its float32 and int8
exports, and ONNX Runtime of a plain ResNet50-last-stride-1 feature extractor, at batch 1 and 32
(random weights).

The int8 export is the float32 one quantised by `keras_mmga.export.int8.quantize`
(QDQ, per-channel weights), calibrated on synthetic people; its mean cosine to
the float32 features is printed with it.

The plain extractor is `keras.applications.ResNet50` cloned with stride 1 in
`conv5_block1_1_conv` / `conv5_block1_0_conv`, + global average pooling + L2
normalisation, with the same in-graph caffe preprocessing, exported through the
same converter: the difference to the MMGA export is the attention and the
three heads. The engines are timed in interleaved rounds, so that load from
other processes on a shared machine hits them alike, and each is scored by its
fastest round (interference only ever adds time); the median is printed too.

Usage:
    python benchmarks/bench_inference.py [--variant mmga] [--rounds 7] [--threads 0]

`--threads 1` runs every engine on one thread (TensorFlow and ONNX Runtime);
then the images per CPU-second column is a load-independent measure of the
work each engine does (with more threads ONNX Runtime's spinning workers
inflate CPU time).
"""

import argparse
import os
import platform
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_mmga import MMGA  # noqa: E402
from keras_mmga.export import convert, export_onnx  # noqa: E402
from keras_mmga.export.int8 import compare, quantize  # noqa: E402

SHAPE = (384, 128, 3)
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)


def plain_resnet50_last_stride1():
    """ResNet50 (no top) with stage 5's stride removed, as a Keras model: 24x8x2048 at 384x128."""
    base = keras.applications.ResNet50(include_top=False, weights=None, input_shape=SHAPE)

    def clone(layer):
        config = layer.get_config()
        if layer.name in ("conv5_block1_1_conv", "conv5_block1_0_conv"):
            config["strides"] = (1, 1)
        return layer.__class__.from_config(config)

    model = keras.models.clone_model(base, clone_function=clone)
    assert model.output_shape[1:3] == (24, 8), model.output_shape
    return model


def export_plain(path):
    import onnx

    backbone = plain_resnet50_last_stride1()

    @tf.function(input_signature=[tf.TensorSpec((None,) + SHAPE, tf.float32, name="images")])
    def features(images):
        x = tf.gather(images, [2, 1, 0], axis=-1) - tf.constant(CAFFE_BGR_MEAN)  # as MMGA's "caffe" mode
        x = tf.reduce_mean(backbone(x, training=False), axis=(1, 2))
        return {"features": tf.math.l2_normalize(x, axis=-1)}

    onnx.save(convert(features), path)
    return path


def synthetic_people(n):
    """`n` synthetic person images, float32 RGB at the benchmark's size (calibration for int8)."""
    from keras_mmga.data import synthetic
    from keras_mmga.deploy import preprocess

    rng = np.random.RandomState(0)
    return np.stack(
        [
            preprocess(
                synthetic.draw_person(rng, synthetic.make_identity(rng), synthetic.make_camera(rng))[0],
                SHAPE[:2],
                color="bgr",
            )
            for _ in range(n)
        ]
    )


def session(path, threads):
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="mmga")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds per batch size")
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: its default)")
    args = parser.parse_args()
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    keras.utils.set_random_seed(0)
    tmp = tempfile.mkdtemp()
    model = MMGA(751, variant=args.variant, input_shape=SHAPE, backbone_weights=None)
    t = time.perf_counter()
    info = export_onnx(model, os.path.join(tmp, "mmga.onnx"))
    print(
        f"export {args.variant}: {time.perf_counter() - t:.0f} s, {info['num_nodes']} nodes, "
        f"max |ORT - Keras| = {info['max_abs_diff']:.1e}"
    )
    plain_path = export_plain(os.path.join(tmp, "plain.onnx"))
    int8_path = os.path.join(tmp, "mmga_int8.onnx")
    calibration = synthetic_people(32)
    t = time.perf_counter()
    quantize(info["onnx_path"], int8_path, calibration)
    cosine = compare(info["onnx_path"], int8_path, calibration)
    print(
        f"int8 quantisation: {time.perf_counter() - t:.0f} s; cosine to float32 on {cosine['images']} "
        f"calibration images: mean {cosine['mean']:.4f}, min {cosine['min']:.4f}"
    )
    mmga_ort, plain_ort = session(info["onnx_path"], args.threads), session(plain_path, args.threads)
    int8_ort = session(int8_path, args.threads)
    compiled = tf.function(lambda x: model(x, training=False), reduce_retracing=True)

    engines = {
        f"Keras predict ({args.variant})": lambda x: model.predict(x, batch_size=len(x), verbose=0),
        f"Keras tf.function call ({args.variant})": lambda x: compiled(x).numpy(),
        f"ONNX Runtime fp32 ({args.variant} export)": lambda x: mmga_ort.run(["features"], {"images": x}),
        f"ONNX Runtime int8 ({args.variant} export)": lambda x: int8_ort.run(["features"], {"images": x}),
        "ONNX Runtime fp32 (plain ResNet50-LS1)": lambda x: plain_ort.run(["features"], {"images": x}),
    }
    rates, medians, per_cpu = {}, {}, {}
    for batch in (1, 32):
        x = np.random.RandomState(batch).uniform(0, 255, (batch,) + SHAPE).astype(np.float32)
        calls = 8 if batch == 1 else 1  # calls per round, so a round lasts ~0.2-1 s per engine
        times = {name: [] for name in engines}
        cpu = {name: [] for name in engines}
        for fn in engines.values():
            fn(x)  # warm-up: tracing, allocation
        for _ in range(args.rounds):
            for name, fn in engines.items():
                start, start_cpu = time.perf_counter(), time.process_time()
                for _ in range(calls):
                    fn(x)
                times[name].append((time.perf_counter() - start) / calls)
                cpu[name].append((time.process_time() - start_cpu) / calls)
        for name in engines:
            rates[name, batch] = batch / float(np.min(times[name]))
            medians[name, batch] = batch / float(np.median(times[name]))
            per_cpu[name, batch] = batch / float(np.median(cpu[name]))
    print(
        f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, ORT {ort.__version__}, "
        f"TF {tf.__version__}, Keras {keras.__version__}, threads {args.threads or 'default'}; "
        f"images/s: best (median) of {args.rounds} rounds; images per CPU-second: median\n"
    )
    print("| engine | batch 1 images/s | batch 32 images/s | batch 1 images/CPU-s | batch 32 images/CPU-s |")
    print("|---|---|---|---|---|")
    for name in engines:
        print(
            f"| {name} | {rates[name, 1]:.1f} ({medians[name, 1]:.1f}) | {rates[name, 32]:.1f} "
            f"({medians[name, 32]:.1f}) | {per_cpu[name, 1]:.1f} | {per_cpu[name, 32]:.1f} |"
        )
    predict_name, _, ort_name, int8_name, plain_name = list(engines)
    for batch in (1, 32):
        for label, r in (("images/s", rates), ("images/CPU-s", per_cpu)):
            print(
                f"\nbatch {batch}, {label}: export / plain ResNet50 = {r[ort_name, batch] / r[plain_name, batch]:.2f} "
                f"(target >= 0.9), export / Keras predict = {r[ort_name, batch] / r[predict_name, batch]:.2f} "
                f"(target >= 1.3)",
                end="",
            )
        print(
            f"\nbatch {batch}, images/s: int8 export / fp32 export = "
            f"{rates[int8_name, batch] / rates[ort_name, batch]:.2f}" + (" (target >= 2)" if batch == 32 else ""),
            end="",
        )
    print()


if __name__ == "__main__":
    main()
