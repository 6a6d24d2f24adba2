"""LiteRT (TFLite) export of the inference graph: float32, float16 or int8, checked through the LiteRT interpreter.

The same traced function as the ONNX export (`inference.inference_function`)
goes through TensorFlow's own TFLite converter and gives L2-normalised float32
features. The default profile's `.tflite` takes NHWC float32 RGB in [0, 255]
(LiteRT's native layout); `"field"` / `"boxmot"` take the field's NCHW
ImageNet-normalised RGB / 255, as their ONNX exports do. NCHW for BoxMOT on
purpose: BoxMOT 25.0.0's TFLiteBackend transposes NCHW crops to NHWC twice
for an NHWC graph (`BaseModelBackend.inference_preprocess`, then
`TFLiteBackend.forward`), so only an NCHW `.tflite` gets its crops right.
Precisions:

- `"float32"`: parity with Keras ≤ `FP32_TOLERANCE` (1e-4).
- `"float16"`: float16 weights (the interpreter computes in float32 on CPU);
  parity ≤ `FP16_TOLERANCE`.
- `"int8"`: the converter's own full-integer quantisation (int8 weights and
  activations, float32 input and output), calibrated on the caller's images;
  the attention units and the embedding heads stay float32, as in the ONNX int8
  export. On trained weights a unit's squeeze can output a range hundreds of times
  narrower than its input × weight range, and XNNPACK (LiteRT's default CPU
  delegate, BoxMOT's too) refuses a requantisation scale ≥ 256: the interpreter
  fails to prepare, or with `ai_edge_litert` aborts the process. Every int8 graph
  is checked against that rule before it is loaded (`xnnpack_violations`);
  the accuracy check is the mean cosine of int8 and float32 features of the
  calibration images (≥ `min_cosine`).

Example:
```python
from keras_mmga.export.tflite_export import export_tflite
info = export_tflite("runs/market_mmga/best.keras", "exported/mmga_market.tflite")
info["max_abs_diff"] <= 1e-4
```
"""

import os
import warnings

import numpy as np

from keras_mmga.export.card import build_card
from keras_mmga.export.inference import float32_inference_copy, inference_function
from keras_mmga.export.profiles import check_profile, write_sidecars
from keras_mmga.export.profiles import graph_input as profile_input
from keras_mmga.export.profiles import layout as profile_layout
from keras_mmga.export.verify import check_parity, cosine_similarity, features_vs_keras, parity_set
from keras_mmga.model_card import card_path_for, write_model_card
from keras_mmga.models.loading import load_model

PRECISIONS = ("float32", "float16", "int8")
# The card's "precision" of each.
_PRECISION_TEXT = {
    "float32": "float32",
    "float16": "float16 weights (float32 compute on CPU)",
    "int8": "int8 weights and activations (TFLite converter, calibrated); float32 input and output",
}


class TFLiteAccuracyError(RuntimeError):
    """The int8 `.tflite` features are further from float32 than `min_cosine` allows."""


class XNNPackError(ValueError):
    """An int8 `.tflite` has an op whose requantisation scale XNNPACK refuses."""


# XNNPACK's rule for quantised convolutions and fully connected layers:
# input_scale * weight_scale / output_scale in [2**-32, 256).
_XNNPACK_REQUANT = (2.0**-32, 256.0)


def _litert():
    # `ai_edge_litert` (the package's `masks` / `test` extra), else TensorFlow's own copy.
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError:
        import tensorflow as tf
        from tensorflow.lite.python.interpreter import OpResolverType

        Interpreter = tf.lite.Interpreter
    return Interpreter, OpResolverType


def _tensor_table(content):
    # Ops and tensors of a flatbuffer, read without any delegate (XNNPACK may refuse the graph).
    Interpreter, OpResolverType = _litert()
    it = Interpreter(
        model_content=content, experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    )
    return it._get_ops_details(), {t["index"]: t for t in it.get_tensor_details()}


def xnnpack_violations(content):
    """`[(op name, output tensor, scale ratio)]` of the quantised CONV_2D / FULLY_CONNECTED ops XNNPACK refuses."""
    ops, tensors = _tensor_table(content)
    scales = lambda i: tensors[i]["quantization_parameters"]["scales"]
    found = []
    for op in ops:
        if op["op_name"] not in ("CONV_2D", "FULLY_CONNECTED", "DEPTHWISE_CONV_2D"):
            continue
        x, w = op["inputs"][:2]
        out = op["outputs"][0]
        if not (len(scales(x)) and len(scales(w)) and len(scales(out))):
            continue
        ratio = scales(x)[0] * scales(w) / scales(out)[0]
        if ratio.max() >= _XNNPACK_REQUANT[1] or ratio.min() < _XNNPACK_REQUANT[0]:
            found.append((op["op_name"], tensors[out]["name"], float(ratio.max())))
    return found


def _float_nodes(content):
    # The attention units and embedding heads of the float graph, by output tensor (the ONNX int8 export's rule).
    from keras_mmga.export.int8 import in_attention_or_head

    ops, tensors = _tensor_table(content)
    return [name for name in (tensors[op["outputs"][0]]["name"] for op in ops) if in_attention_or_head(name)]


def interpreter(path, num_threads=None):
    """A LiteRT interpreter for `path` (`ai_edge_litert`, else TensorFlow's `tf.lite`), tensors allocated."""
    Interpreter, _ = _litert()
    it = Interpreter(model_path=os.fspath(path), num_threads=num_threads)
    it.allocate_tensors()
    return it


def run_tflite(it, batch):
    """Features of a float32 batch in the graph's layout, through interpreter `it` (resized to the batch)."""
    batch = np.ascontiguousarray(batch, np.float32)
    inp = it.get_input_details()[0]
    if tuple(inp["shape"]) != batch.shape:
        it.resize_tensor_input(inp["index"], batch.shape)
        it.allocate_tensors()
    it.set_tensor(inp["index"], batch)
    it.invoke()
    return np.array(it.get_tensor(it.get_output_details()[0]["index"]))


def graph_input(images, profile):
    """Raw RGB `(N, H, W, 3)` in [0, 255] → what the `.tflite` of `profile` takes (NHWC for the default profile)."""
    return profile_input(images, profile)


def export_tflite(
    model_or_path,
    output_path,
    precision="float32",
    profile="default",
    calibration=None,
    min_cosine=0.99,
    parity_images=None,
    check=True,
    write_card=True,
    keep_float=True,
):
    """Exports the inference graph to a `.tflite` file, checks it through the LiteRT interpreter, writes a card.

    Args:
        model_or_path: an `MMGA` or a `.keras` path (as `export_onnx`).
        output_path: the `.tflite` file to write; the card `NAME.json` goes beside it.
        precision: `"float32"`, `"float16"` or `"int8"`.
        profile: `"default"`, `"field"` or `"boxmot"` (`keras_mmga.export.profiles`);
            the input is NHWC for `"default"`, NCHW for the others. `"boxmot"` also writes BoxMOT's
            sidecar `NAME.tflite.metadata.json` (its TFLite backend reads the crop
            size from it).
        calibration: for `"int8"`: image paths or RGB arrays (at least one).
        min_cosine: for `"int8"`: the least mean cosine(int8, float32) accepted.
        parity_images: extra images for the float32 / float16 parity check.
        check: run the check (raise `ParityError` / `TFLiteAccuracyError` and
            remove the file when it fails).
        write_card: write the model card.
        keep_float: for `"int8"`: keep the attention units and embedding heads float32 (see above).

    Returns:
        Dict with `tflite_path`, `card_path`, `max_abs_diff` (float32 / float16),
        `cosine` (int8), `input_shape`, `feature_dim` and the `card`.

    Example:
    ```python
    export_tflite(model, "exported/mmga_int8.tflite", precision="int8", calibration=paths)
    ```
    """
    import tensorflow as tf

    from keras_mmga.preprocessing import preprocess_batch

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}.")
    check_profile(profile)
    output_path = os.fspath(output_path)
    if not output_path.endswith(".tflite"):
        raise ValueError(f"output_path must end with .tflite, got {output_path!r}.")
    if precision == "int8" and not calibration:
        raise ValueError("precision='int8' needs calibration images (paths or RGB arrays).")
    source = os.fspath(model_or_path) if isinstance(model_or_path, (str, os.PathLike)) else None
    source_model = load_model(model_or_path)
    source_policy = source_model.dtype_policy.name
    model = float32_inference_copy(source_model)
    h, w = model.image_size
    calib = None
    if precision == "int8":
        calib = preprocess_batch(calibration, (h, w))

    layout = profile_layout(profile)  # NHWC (LiteRT's own) for the default profile
    function = inference_function(model, profile=profile)
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    # Frozen first, as tf2onnx does: handed the live function, the converter keeps
    # some of Keras 3's variables as READ_VARIABLE ops that the interpreter has no
    # values for (every feature NaN).
    frozen = convert_variables_to_constants_v2(function.get_concrete_function())
    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
    if precision == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif precision == "int8":
        feed = graph_input(calib, profile)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([feed[i : i + 1]] for i in range(len(feed)))
        # int8 kernels wherever LiteRT has one; float32 input and output stay.
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
    if precision == "int8" and keep_float:
        # Selective quantisation: TensorFlow's documented way is the quantisation debugger's deny list.
        kept = _float_nodes(tf.lite.TFLiteConverter.from_concrete_functions([frozen]).convert())
        with warnings.catch_warnings():  # the debugger reads through tf.lite.Interpreter (deprecated)
            warnings.simplefilter("ignore", UserWarning)
            debugger = tf.lite.experimental.QuantizationDebugger(
                converter=converter,
                debug_dataset=converter.representative_dataset,
                debug_options=tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=kept),
            )
            flatbuffer = debugger.get_nondebug_quantized_model()
    else:
        flatbuffer = converter.convert()
    if precision == "int8":
        bad = xnnpack_violations(flatbuffer)
        if bad:
            op, name, ratio = bad[0]
            raise XNNPackError(
                f"int8 .tflite not written: {len(bad)} op(s) have a requantisation scale outside XNNPACK's "
                f"[2**-32, 256), e.g. {op} {name!r} ({ratio:.1f}); LiteRT's default CPU delegate would refuse it"
                + ("" if keep_float else "; keep_float=True keeps the attention units float32")
                + "."
            )
    os.makedirs(os.path.dirname(output_path) or ".", exist_ok=True)
    with open(output_path, "wb") as f:
        f.write(flatbuffer)

    figures = {
        "runtime": "LiteRT interpreter (CPU)",
        "max_abs_diff_vs_keras_float32": None,
        "images": None,
        "tolerance": None,
        "cosine_vs_keras_float32": None,
    }
    if check:
        try:
            if precision == "int8":
                images, counts = calib, {"calibration": len(calib)}
            else:
                images, counts = parity_set((h, w), parity_images)
            it = interpreter(output_path)
            got, expected = features_vs_keras(model, lambda x: run_tflite(it, x), images, profile, runtime="LiteRT")
            figures["images"] = counts
            if precision == "int8":
                cos = cosine_similarity(got, expected)
                figures["cosine_vs_keras_float32"] = {
                    "mean": float(cos.mean()),
                    "min": float(cos.min()),
                    "threshold": float(min_cosine),
                }
                if not cos.mean() >= min_cosine:
                    raise TFLiteAccuracyError(
                        f"int8 LiteRT features are too far from float32: mean cosine {cos.mean():.4f} < {min_cosine:g} "
                        f"on {len(images)} calibration images; {output_path!r} was removed."
                    )
            else:
                diff = float(np.max(np.abs(got - expected)))
                tolerance = check_parity(diff, precision == "float16", len(images), output_path, runtime="LiteRT")
                figures.update(max_abs_diff_vs_keras_float32=diff, tolerance=tolerance)
        except Exception:
            os.remove(output_path)
            raise

    card = build_card(
        model,
        None,
        False,
        None,
        precision == "float16",
        figures,
        source,
        source_policy,
        profile=profile,
        runtime="tflite",
        precision=_PRECISION_TEXT[precision],
    )
    card["tflite"] = {"precision": precision, "bytes": len(flatbuffer), "converter": f"tensorflow {tf.__version__}"}
    if precision == "int8":
        card["tflite"]["float32_kept"] = "attention units and embedding heads" if keep_float else "none"
    card_path = None
    if write_card:
        card_path = card_path_for(output_path)
        write_model_card(card_path, card)
    metadata_path = write_sidecars(output_path, profile, (h, w))
    return {
        "tflite_path": output_path,
        "card_path": card_path,
        "boxmot_metadata_path": metadata_path,
        "max_abs_diff": figures["max_abs_diff_vs_keras_float32"],
        "cosine": figures["cosine_vs_keras_float32"],
        "input_shape": (None, 3, h, w) if layout == "NCHW" else (None, h, w, 3),
        "feature_dim": model.feature_dim,
        "card": card,
    }
