"""`export_onnx`: the steps of an ONNX export in order, from a checkpoint to a checked file and its model card.

Load (`keras_mmga.models.loading`), copy in float32 (`inference`), convert
(`conversion`), optionally rewrite in float16 (`float16`), check the graph
(`graph`) and ONNX Runtime against Keras (`verify`), write the card (`card`,
`keras_mmga.model_card`).
"""

import os

import keras
import numpy as np

from keras_mmga.export.card import build_card
from keras_mmga.export.conversion import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET, convert, rename_tensor
from keras_mmga.export.float16 import to_float16
from keras_mmga.export.graph import unused_nodes
from keras_mmga.export.inference import INPUT_NAME, OUTPUT_NAME, float32_inference_copy, inference_function
from keras_mmga.export.profiles import TENSOR_NAMES, check_profile, layout, write_sidecars
from keras_mmga.export.verify import FP16_TOLERANCE, FP32_TOLERANCE, check_parity, parity, parity_set
from keras_mmga.model_card import card_path_for, write_model_card
from keras_mmga.models.loading import load_model
from keras_mmga.run_lock import check_output_file


def export_onnx(
    model_or_path,
    output_path,
    opset=DEFAULT_OPSET,
    nchw=False,
    fp16=False,
    parity_images=None,
    check=True,
    write_card=True,
    log=None,
    profile="default",
):
    """Exports the inference graph to ONNX, checks it, and writes a model card.

    Args:
        model_or_path: an `MMGA` (or any model with `image_size`, `get_config`
            and the `training=False` feature call), or a `.keras` path. Mixed
            precision and distributed models are exported in float32 (see
            `float32_inference_copy`).
        output_path: the `.onnx` file to write (its folder is created).
        opset: ONNX opset, 13 to 18 (default 17, the highest the TensorRT 8.5
            parser documents).
        nchw: input `(N, 3, H, W)` instead of `(N, H, W, 3)`.
        fp16: float16 weights and activations, float32 input, output and L2
            normalisation (see `to_float16`); parity tolerance `FP16_TOLERANCE`.
        parity_images: optional real images (paths, or RGB arrays of any size)
            added to 4 random and 2 synthetic person images for the parity
            check. They are resized like `keras_mmga.deploy` does.
        check: run `onnx.checker`, the dead-node check and the ONNX Runtime vs
            Keras comparison; raise `ParityError` (and delete the file) if the
            max absolute difference exceeds `FP32_TOLERANCE` (1e-4) or
            `FP16_TOLERANCE` (1e-2) for `fp16`.
        write_card: write the model card `NAME.json` beside `NAME.onnx`.
        log: optional callable told each step that takes seconds (loading,
            converting, checking), one line each.
        profile: the input convention (`keras_mmga.export.profiles`):
            `"default"` (RGB in [0, 255]), `"field"` (NCHW, RGB / 255 normalised
            by the ImageNet mean / std, as torchreid, fast-reid and BoxMOT feed)
            or `"boxmot"` (`"field"`, output named `output0`, and BoxMOT's
            sidecar `NAME.onnx.metadata.json`). The field profiles imply NCHW.

    Returns:
        Dict with `onnx_path`, `card_path`, `max_abs_diff`, `input_shape`,
        `feature_dim`, `num_nodes` and the `card` itself.

    Example:
    ```python
    info = export_onnx("runs/market_mmga/best.keras", "exported/mmga_market.onnx", nchw=True)
    info["input_shape"]
    ```
    """
    import onnx

    if not MIN_OPSET <= int(opset) <= MAX_OPSET:
        raise ValueError(f"opset must be between {MIN_OPSET} and {MAX_OPSET}, got {opset}.")
    output_path = os.fspath(output_path)
    if not output_path.endswith(".onnx"):
        raise ValueError(f"output_path must end with .onnx, got {output_path!r}.")
    # Where the files go is checked before the conversion, which takes tens of seconds.
    check_output_file(output_path, "output_path (--output)")
    if write_card:
        check_output_file(card_path_for(output_path), "the model card")
    log = log or (lambda line: None)
    source = os.fspath(model_or_path) if isinstance(model_or_path, (str, os.PathLike)) else None
    if source:
        log(f"loading {source} ...")
    source_model = load_model(model_or_path)
    for attribute in ("image_size", "get_config"):
        if not hasattr(source_model, attribute):
            raise TypeError(f"Cannot export a {type(source_model).__name__}: it has no `{attribute}`.")
    source_policy = source_model.dtype_policy.name
    check_profile(profile)
    nchw = layout(profile, nchw) == "NCHW"
    model = float32_inference_copy(source_model)
    h, w = model.image_size

    log(f"converting to ONNX (opset {opset}; tens of seconds) ...")
    proto = convert(inference_function(model, nchw, profile), opset)
    graph = proto.graph
    if [i.name for i in graph.input] != [INPUT_NAME] or [o.name for o in graph.output] != [OUTPUT_NAME]:
        raise RuntimeError(
            f"Expected one input 'images' and one output 'features', got "
            f"{[i.name for i in graph.input]} and {[o.name for o in graph.output]}."
        )
    output_name = TENSOR_NAMES[profile][1]
    if output_name != OUTPUT_NAME:
        rename_tensor(graph, OUTPUT_NAME, output_name)
    if fp16:
        proto = to_float16(proto)
    os.makedirs(os.path.dirname(output_path) or ".", exist_ok=True)
    onnx.save(proto, output_path)

    diff, diff_source, counts = None, None, None
    if check:
        log("checking the graph and comparing ONNX Runtime with Keras ...")
        try:
            onnx.checker.check_model(output_path, full_check=True)
            dead = unused_nodes(proto)
            if dead:
                raise RuntimeError(f"The export has nodes that do not feed `features`: {[n.name for n in dead][:5]}.")
            images, counts = parity_set((h, w), parity_images)
            diff = parity(model, output_path, images, nchw, profile=profile)
            check_parity(diff, fp16, len(images), output_path)
            if source_policy != "float32":
                # How far the deployed float32 graph is from the model as trained.
                src = keras.ops.convert_to_numpy(source_model(images, training=False))
                diff_source = float(
                    np.max(np.abs(np.asarray(src, np.float32) - keras.ops.convert_to_numpy(model(images))))
                )
        except Exception:
            os.remove(output_path)
            raise

    parity_figures = {  # None where `check` was off
        "max_abs_diff_vs_keras_float32": diff,
        "tolerance": FP16_TOLERANCE if fp16 else FP32_TOLERANCE,
        "images": counts,
        "runtime": "onnxruntime CPUExecutionProvider",
        "max_abs_diff_keras_float32_vs_source_policy": diff_source,
    }
    card = build_card(model, proto, nchw, opset, fp16, parity_figures, source, source_policy, profile=profile)
    card_path = None
    if write_card:
        card_path = card_path_for(output_path)
        write_model_card(card_path, card)
    metadata_path = write_sidecars(output_path, profile, (h, w))
    return {
        "onnx_path": output_path,
        "card_path": card_path,
        "boxmot_metadata_path": metadata_path,
        "max_abs_diff": diff,
        "input_shape": (None, 3, h, w) if nchw else (None, h, w, 3),
        "feature_dim": model.feature_dim,
        "num_nodes": len(proto.graph.node),
        "card": card,
    }
