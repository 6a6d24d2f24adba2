"""ONNX export of the inference graph: image in, L2-normalised feature out.

The exported graph is `model(images, training=False)`: no classifier, no
attention-map outputs, no loss computation. One input `images` (float32 RGB in
[0, 255], NHWC, or NCHW with `nchw=True`) with a dynamic batch axis and fixed
H, W; one output `features` (N, D). Preprocessing is inside the graph.
"""

import hashlib
import json
import os

import keras
import numpy as np

DEFAULT_OPSET = 17
FP32_TOLERANCE = 1e-4
# Half-precision weights and activations, normalisation in float32: features
# of unit length agree with float32 to about 1e-2 per component.
FP16_TOLERANCE = 5e-2


def _float32_copy(model):
    """A float32 MMGA with the weights of `model` (e.g. a mixed-precision or distributed one)."""
    from keras_mmga.models import MMGA

    config = model.get_config()
    config["dtype"] = "float32"
    clone = MMGA.from_config(config)
    clone.set_weights([keras.ops.convert_to_numpy(w) for w in model.weights])
    return clone


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def inference_function(model, nchw=False, batch=None):
    """The traced function that is exported: images → features."""
    import tensorflow as tf

    h, w = model.image_size
    shape = (batch, 3, h, w) if nchw else (batch, h, w, 3)

    @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32, name="images")])
    def features(images):
        if nchw:
            images = tf.transpose(images, (0, 2, 3, 1))
        return {"features": model(images, training=False)}

    return features


def _rename_output(proto, name="features"):
    old = proto.graph.output[0].name
    if old == name:
        return
    for node in proto.graph.node:
        node.output[:] = [name if o == old else o for o in node.output]
        node.input[:] = [name if i == old else i for i in node.input]
    proto.graph.output[0].name = name


def _to_fp16(proto):
    """Float16 initializers with Casts at their use, float32 input and output.

    Storage and bandwidth halve; computation stays float32 in runtimes without
    fp16 kernels, and TensorRT folds the casts when building an fp16 engine.
    """
    import onnx
    from onnx import helper, numpy_helper

    graph = proto.graph
    new_inits, casts = [], []
    for init in graph.initializer:
        array = numpy_helper.to_array(init)
        if array.dtype == np.float32 and array.size > 16:
            half = numpy_helper.from_array(array.astype(np.float16), init.name + "_fp16")
            new_inits.append(half)
            casts.append(helper.make_node("Cast", [half.name], [init.name], to=onnx.TensorProto.FLOAT,
                                          name=init.name + "_cast"))
        else:
            new_inits.append(init)
    del graph.initializer[:]
    graph.initializer.extend(new_inits)
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    return proto


def export_onnx(model_or_path, output_path, opset=DEFAULT_OPSET, nchw=False, fp16=False, parity_images=None,
                check=True, write_card=True):
    """Exports the inference graph to ONNX, checks it, and writes a model card.

    Args:
        model_or_path: an `MMGA` or a `.keras` path.
        output_path: the `.onnx` file to write (its folder is created).
        opset: ONNX opset (≤ 18; 17 by default).
        nchw: input `(N, 3, H, W)` instead of `(N, H, W, 3)`.
        fp16: half-precision weights (see `_to_fp16`).
        parity_images: optional float32 RGB images `(N, H, W, 3)` in [0, 255]
            (e.g. real ones) used with 4 random images for the parity check.
        check: run `onnx.checker` and the ONNX Runtime vs Keras parity check;
            raises if the maximum absolute difference exceeds 1e-4 (fp32) or
            5e-2 (fp16).
        write_card: write `<output>.json` beside the model.

    Returns:
        Dict with `onnx_path`, `card_path`, `max_abs_diff`, `input_shape`,
        `feature_dim`.

    Example:
    >>> export_onnx("runs/market/best.keras", "exported/mmga_market.onnx")
    """
    import onnx
    import tensorflow as tf
    import tf2onnx

    from keras_mmga.engine.evaluator import load_model

    source = os.fspath(model_or_path) if isinstance(model_or_path, (str, os.PathLike)) else None
    model = _float32_copy(load_model(model_or_path))
    if not 7 <= int(opset) <= 18:
        raise ValueError(f"opset must be between 7 and 18, got {opset}.")
    fn = inference_function(model, nchw)
    proto, _ = tf2onnx.convert.from_function(fn, input_signature=fn.input_signature, opset=int(opset))
    _rename_output(proto)
    proto.graph.input[0].name = proto.graph.input[0].name  # already "images" (from the TensorSpec name)
    if proto.graph.input[0].name != "images":
        raise RuntimeError(f"Unexpected ONNX input name {proto.graph.input[0].name!r}.")
    if fp16:
        proto = _to_fp16(proto)
    os.makedirs(os.path.dirname(os.fspath(output_path)) or ".", exist_ok=True)
    onnx.save(proto, os.fspath(output_path))

    h, w = model.image_size
    diff = None
    if check:
        onnx.checker.check_model(os.fspath(output_path))
        images = np.random.RandomState(0).uniform(0, 255, (4, h, w, 3)).astype(np.float32)
        if parity_images is not None:
            images = np.concatenate([images, np.asarray(parity_images, np.float32)])
        diff = parity(model, output_path, images, nchw)
        tolerance = FP16_TOLERANCE if fp16 else FP32_TOLERANCE
        if diff > tolerance:
            raise RuntimeError(f"ONNX Runtime differs from Keras by {diff:.2e} (> {tolerance}) for {output_path!r}.")
    card_path = None
    if write_card:
        card_path = os.path.splitext(os.fspath(output_path))[0] + ".json"
        card = {
            "variant": model.variant,
            "input": {"name": "images", "layout": "NCHW" if nchw else "NHWC",
                      "shape": ["N", 3, h, w] if nchw else ["N", h, w, 3], "dtype": "float32",
                      "values": "RGB in [0, 255]"},
            "output": {"name": "features", "shape": ["N", model.feature_dim], "l2_normalised": True},
            "preprocessing": f"inside the graph: {model.preprocessing}",
            "opset": int(opset),
            "fp16_weights": bool(fp16),
            "max_abs_diff_vs_keras": diff,
            "versions": {"keras": keras.__version__, "tensorflow": tf.__version__, "tf2onnx": tf2onnx.__version__,
                         "onnx": onnx.__version__},
            "source_checkpoint": source,
            "source_sha256": _sha256(source) if source else None,
        }
        with open(card_path, "w") as f:
            json.dump(card, f, indent=2)
    return {"onnx_path": os.fspath(output_path), "card_path": card_path, "max_abs_diff": diff,
            "input_shape": (None, 3, h, w) if nchw else (None, h, w, 3), "feature_dim": model.feature_dim}


def parity(model, onnx_path, images, nchw=False):
    """Max |ONNX Runtime − Keras| of the features of `images` (NHWC float32)."""
    import onnxruntime as ort

    session = ort.InferenceSession(os.fspath(onnx_path), providers=["CPUExecutionProvider"])
    feed = np.transpose(images, (0, 3, 1, 2)) if nchw else images
    got = session.run(["features"], {"images": np.ascontiguousarray(feed)})[0]
    expected = keras.ops.convert_to_numpy(model(images, training=False))
    return float(np.max(np.abs(got - expected)))
