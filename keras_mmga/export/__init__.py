"""ONNX export of the inference graph: image in, L2-normalised feature out.

The exported graph is `model(images, training=False)` and nothing else: no
classifier, no attention-map outputs, no loss. It has one input `images`
(float32 RGB in [0, 255], `(N, H, W, 3)`, or `(N, 3, H, W)` with `nchw=True`)
whose only dynamic axis is the batch, and one output `features` `(N, D)`,
L2-normalised. Preprocessing (the ResNet mean subtraction) is inside the graph,
so whoever runs it feeds raw pixels.

`export_onnx` also proves the file is right before handing it over: it runs
`onnx.checker`, checks that every node feeds `features` (so nothing only
training needs is left in), compares ONNX Runtime with Keras on random and
person images (max absolute difference ≤ 1e-4 in float32) and writes a JSON
model card beside the `.onnx` file.

One step per module: `inference` (the float32 copy and the traced call),
`conversion` (tf2onnx), `graph` (dead nodes, dynamic dimensions, the
normalisation tail), `float16`, `verify` (parity with Keras), `card` (the
model card's contents; `keras_mmga.model_card` reads and writes it),
`onnx_export` (`export_onnx`, the steps in order), `int8` (static
quantisation), `profiles` (input conventions: default, field, BoxMOT),
`tflite_export` (LiteRT) and `triton` (a Triton model repository). The names
load on first use (PEP 562), so importing the package loads neither TensorFlow nor Keras.

Example:
```python
from keras_mmga.export import export_onnx
info = export_onnx("runs/market_mmga/best.keras", "exported/mmga_market.onnx")
info["max_abs_diff"] <= 1e-4
```
"""

from keras_mmga.lazy import lazy_exports

# name -> module that defines it
_LAZY = {
    "build_card": "keras_mmga.export.card",
    "DEFAULT_OPSET": "keras_mmga.export.conversion",
    "MAX_OPSET": "keras_mmga.export.conversion",
    "MIN_OPSET": "keras_mmga.export.conversion",
    "convert": "keras_mmga.export.conversion",
    "to_float16": "keras_mmga.export.float16",
    "dynamic_dims": "keras_mmga.export.graph",
    "normalisation_tail": "keras_mmga.export.graph",
    "unused_nodes": "keras_mmga.export.graph",
    "INPUT_NAME": "keras_mmga.export.inference",
    "OUTPUT_NAME": "keras_mmga.export.inference",
    "float32_inference_copy": "keras_mmga.export.inference",
    "inference_function": "keras_mmga.export.inference",
    "training_function": "keras_mmga.export.inference",
    "AccuracyError": "keras_mmga.export.int8",
    "export_int8": "keras_mmga.export.int8",
    "export_onnx": "keras_mmga.export.onnx_export",
    "FP16_TOLERANCE": "keras_mmga.export.verify",
    "FP32_TOLERANCE": "keras_mmga.export.verify",
    "ParityError": "keras_mmga.export.verify",
    "parity": "keras_mmga.export.verify",
    "parity_images": "keras_mmga.export.verify",
    "PROFILES": "keras_mmga.export.profiles",
    "field_images": "keras_mmga.export.profiles",
    "export_tflite": "keras_mmga.export.tflite_export",
    "TFLiteAccuracyError": "keras_mmga.export.tflite_export",
    "export_triton_repository": "keras_mmga.export.triton",
    "triton_config": "keras_mmga.export.triton",
    "CARD_FORMAT": "keras_mmga.model_card",
    "card_path_for": "keras_mmga.model_card",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_exports("keras_mmga.export", _LAZY, globals())
