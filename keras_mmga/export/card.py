"""The contents of the model card an export writes (`keras_mmga.model_card` has the format and the I/O).

Example:
```python
card = build_card(model, proto, nchw=False, opset=17, fp16=False, parity={...}, source=None,
                  source_policy="float32")
card["input"]["shape"]
```
"""

import keras

from keras_mmga.export.inference import INPUT_NAME, OUTPUT_NAME
from keras_mmga.image_io import sha256
from keras_mmga.model_card import CARD_FORMAT

# What the graph does to the pixels before the backbone, for the card.
_PREPROCESSING = {
    "caffe": "in the graph: RGB -> BGR, minus the ImageNet mean (103.939, 116.779, 123.68), no scaling",
    "torch": "in the graph: minus (123.675, 116.28, 103.53), divided by (58.395, 57.12, 57.375), RGB",
}


def build_card(model, proto, nchw, opset, fp16, parity, source, source_policy):
    """The model card of an export, as a dict (see `export_onnx` and `exported/README.md`).

    Args:
        model: the exported float32 model (`image_size`, `feature_dim`; `variant`, `num_classes` and
            `preprocessing` when it has them).
        proto: the exported `onnx.ModelProto`.
        nchw, opset, fp16: as `export_onnx` was called.
        parity: the card's `"parity"` entry (figures of the parity check; None where it did not run).
        source: the `.keras` path exported, or None for an in-memory model.
        source_policy: the source model's dtype policy name.
    """
    import onnx
    import tensorflow as tf
    import tf2onnx

    from keras_mmga.export import tensorrt_ops

    h, w = model.image_size
    return {
        "format": CARD_FORMAT,
        "variant": getattr(model, "variant", None),
        "num_classes_trained": getattr(model, "num_classes", None),
        "input": {
            "name": INPUT_NAME,
            "layout": "NCHW" if nchw else "NHWC",
            "shape": ["N", 3, h, w] if nchw else ["N", h, w, 3],
            "dtype": "float32",
            "values": "RGB in [0, 255], resized to H x W (bilinear), no normalisation",
        },
        "output": {"name": OUTPUT_NAME, "shape": ["N", model.feature_dim], "dtype": "float32",
                   "l2_normalised": True},
        "preprocessing": _PREPROCESSING.get(getattr(model, "preprocessing", None), "none"),
        "opset": int(opset),
        "precision": "float16 (float32 input, output and L2 normalisation)" if fp16 else "float32",
        "num_nodes": len(proto.graph.node),
        "parity": parity,
        "tensorrt": {"problems": tensorrt_ops.check(proto), "checked_against": "onnx-tensorrt operator matrix, TensorRT 8.5"},
        "source": {"checkpoint": source, "sha256": sha256(source) if source else None, "dtype_policy": source_policy},
        "versions": _versions(tf, tf2onnx, onnx),
    }


def _versions(tf, tf2onnx, onnx):
    import onnxruntime

    import keras_mmga

    return {"keras_mmga": keras_mmga.__version__, "keras": keras.__version__, "tensorflow": tf.__version__,
            "tf2onnx": tf2onnx.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}
