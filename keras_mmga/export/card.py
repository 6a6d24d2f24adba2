"""The contents of the model card an export writes (`keras_mmga.model_card` has the format and the I/O).

Example:
```python
card = build_card(model, proto, nchw=False, opset=17, fp16=False, parity={...}, source=None,
                  source_policy="float32")
card["input"]["shape"]
```
"""

import keras

from keras_mmga.image_io import sha256
from keras_mmga.model_card import CARD_FORMAT

# What the graph does to the pixels before the backbone, for the card.
_PREPROCESSING = {
    "caffe": "in the graph: RGB -> BGR, minus the ImageNet mean (103.939, 116.779, 123.68), no scaling",
    "torch": "in the graph: minus (123.675, 116.28, 103.53), divided by (58.395, 57.12, 57.375), RGB "
    "(= RGB / 255, ImageNet mean / std: torchvision's and timm's)",
}


def build_card(
    model, proto, nchw, opset, fp16, parity, source, source_policy, profile="default", runtime="onnx", precision=None
):
    """The model card of an export, as a dict (see `export_onnx` and `exported/README.md`).

    Args:
        model: the exported float32 model (`image_size`, `feature_dim`; `variant`, `num_classes` and
            `preprocessing` when it has them).
        proto: the exported `onnx.ModelProto`.
        nchw, opset, fp16: as `export_onnx` was called.
        parity: the card's `"parity"` entry (figures of the parity check; None where it did not run).
        source: the `.keras` path exported, or None for an in-memory model.
        source_policy: the source model's dtype policy name.
        profile: the input profile (`keras_mmga.export.profiles`); the card's
            `"input"` entry is its input contract.
        runtime: `"onnx"` (`proto` an `onnx.ModelProto`) or `"tflite"` (`proto` None).
        precision: the card's `"precision"` text where `fp16` does not say it all (LiteRT's int8).
    """
    import onnx
    import tensorflow as tf
    import tf2onnx

    from keras_mmga.export import tensorrt_ops
    from keras_mmga.export.profiles import TENSOR_NAMES, input_contract

    mode = getattr(model, "preprocessing", None)
    onnx_graph = runtime == "onnx"
    return {
        "format": CARD_FORMAT,
        "runtime": runtime,
        "profile": profile,
        "variant": getattr(model, "variant", None),
        "num_classes_trained": getattr(model, "num_classes", None),
        "input": input_contract(profile, model.image_size, nchw, mode),
        "output": {
            "name": TENSOR_NAMES[profile][1],
            "shape": ["N", model.feature_dim],
            "dtype": "float32",
            "l2_normalised": True,
        },
        "preprocessing": _PREPROCESSING.get(mode, "none"),
        "backbone": {
            "architecture": getattr(model, "backbone_name", None) or "resnet50",
            "initial_weights": getattr(model, "backbone_weights_info", None),
        },
        "opset": int(opset) if onnx_graph else None,
        "precision": precision or ("float16 (float32 input, output and L2 normalisation)" if fp16 else "float32"),
        "num_nodes": len(proto.graph.node) if onnx_graph else None,
        "parity": parity,
        "tensorrt": (
            {"problems": tensorrt_ops.check(proto), "checked_against": "onnx-tensorrt operator matrix, TensorRT 8.5"}
            if onnx_graph
            else None
        ),
        "source": {"checkpoint": source, "sha256": sha256(source) if source else None, "dtype_policy": source_policy},
        "versions": _versions(tf, tf2onnx, onnx),
    }


def _versions(tf, tf2onnx, onnx):
    import onnxruntime

    import keras_mmga

    return {
        "keras_mmga": keras_mmga.__version__,
        "keras": keras.__version__,
        "tensorflow": tf.__version__,
        "tf2onnx": tf2onnx.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
