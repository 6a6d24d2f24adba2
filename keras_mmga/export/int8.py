"""int8 ONNX export: static quantisation calibrated on the user's images, checked for accuracy.

A float32 export (`keras_mmga.export.export_onnx`) is quantised with ONNX
Runtime's static quantisation: QDQ format, per-channel int8 weights, uint8
activations whose ranges are calibrated on real images (read and resized as
training and `keras_mmga.deploy` do: decoded, bilinear to the model's size,
float32 RGB in [0, 255]). The final L2 normalisation stays float32 (a
quantised norm would give features that are not unit length), and the graph
keeps the float32 interface: input `images`, output `features`, so
`OnnxFeatureExtractor` runs it unchanged. On CPUs with AVX512-VNNI (or AVX-VNNI)
ONNX Runtime runs the quantised convolutions as 8-bit integer products.

Parity becomes an accuracy check: the cosine similarity between int8 and
float32 features of the calibration images (the export fails if the mean is
below `min_cosine`) and, given a dataset, rank-1 / mAP of both models. The
figures go in the model card.

Example:
```python
from keras_mmga.export import export_int8
info = export_int8("runs/market_mmga/best.keras", "exported/mmga_market_int8.onnx",
                   calibration="Market-1501/bounding_box_train")
info["card"]["int8"]["cosine_vs_float32"]["mean"] >= 0.99
```
"""

import os
import shutil
import tempfile

import numpy as np

from keras_mmga.export.verify import cosine_similarity
from keras_mmga.image_io import IMAGE_SUFFIXES, is_image_file, read_image
from keras_mmga.model_card import card_path_for, write_model_card
from keras_mmga.preprocessing import graph_layout, preprocess_batch

# Goal of the int8 export (issue 14) and the default failure threshold:
# mean cosine(int8 feature, float32 feature) over the calibration images.
DEFAULT_MIN_COSINE = 0.99
DEFAULT_CALIBRATION_COUNT = 128
# Images per calibration batch. ONNX Runtime keeps every intermediate tensor
# of the batches it has seen until it computes the ranges (~150 MB per image
# at 384x128), so the ranges are computed and merged after each batch
# (`CalibStridedMinMax`, MinMax calibration): memory stays that of one batch.
CALIBRATION_BATCH = 8


def in_attention_or_head(name):
    """Whether a converted graph's node / tensor `name` belongs to an attention unit or an embedding head.

    Keras names them `module*` (inside the backbone's scope) and `*_head`; tf2onnx and the TFLite
    converter keep those scopes, so the ONNX and LiteRT int8 exports keep the same nodes float32.
    """
    return "/module" in name or "_head" in name


class AccuracyError(RuntimeError):
    """The int8 model's features are further from float32 than the threshold allows."""


def calibration_paths(folder, count=DEFAULT_CALIBRATION_COUNT):
    """`count` images of `folder` (searched recursively), evenly spaced in name order.

    Spacing over the sorted names spreads the sample across identities and
    cameras (Market-style names sort by identity) and is deterministic.

    Raises:
        FileNotFoundError: `folder` does not exist.
        ValueError: it holds no images, or `count` < 1.
    """
    folder = os.fspath(folder)
    if int(count) < 1:
        raise ValueError(f"calibration_count must be positive, got {count}.")
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"Calibration folder not found: {folder!r}.")
    found = sorted(os.path.join(root, f) for root, _, files in os.walk(folder) for f in files if is_image_file(f))
    if not found:
        raise ValueError(f"Calibration folder {folder!r} has no images ({', '.join(IMAGE_SUFFIXES)}).")
    if len(found) <= count:
        return found
    return [found[i] for i in np.linspace(0, len(found) - 1, int(count)).round().astype(int)]


def load_images(paths, image_size):
    """Images as the model is fed in training: float32 RGB `(N, H, W, 3)` in [0, 255], bilinear to `image_size`."""

    return preprocess_batch(list(paths), image_size)


def _float_tail_nodes(proto):
    # The nodes of the final L2 normalisation: the same walk back from
    # `features` that keeps them float32 in the float16 export.
    from keras_mmga.export.graph import normalisation_tail

    return [proto.graph.node[i].name for i in sorted(normalisation_tail(proto.graph))]


INT8_TARGETS = ("onnxruntime", "tensorrt")
# No "entropy": quantize_static (ONNX Runtime 1.32) builds its entropy calibrator with 128 histogram
# bins and 128 quantised bins and passes no option to change them, so the KL search has one candidate,
# the full range: exactly MinMax (measured: identical cosines to 4 digits on three checkpoints).
CALIBRATION_METHODS = ("minmax", "percentile")
KEEP_FLOAT = ("tail", "attention", "attention+stem")
# onnxruntime by default: on x86 CPUs without VNNI ONNX Runtime runs uint8 x int8 (U8S8) products
# about 2.4x faster than float32 and symmetric int8 x int8 (S8S8) about as fast as float32
# (benchmarks/bench_int8.py; ONNX Runtime's quantisation guide says the same). TensorRT wants S8S8.
DEFAULT_INT8_TARGET = "onnxruntime"
DEFAULT_CALIBRATION_METHOD = "minmax"
DEFAULT_KEEP_FLOAT = "attention"


def _attention_nodes(proto):
    # The attention units (`module*` in the graph's names: their 1x1 convs, the squeeze/excite
    # MatMuls, the sigmoids and the products that apply the maps) and the embedding heads
    # (`*_head`: dense + BN). tf2onnx renames some convs (`Conv__N`): those count when a node of
    # the unit consumes their output.
    names = [n.name for n in proto.graph.node]
    inside = {n.name for n in proto.graph.node if in_attention_or_head(n.name)}
    consumers = {}
    for n in proto.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n.name)
    for n in proto.graph.node:
        if (
            n.op_type == "Conv"
            and n.name not in inside
            and any(c in inside for o in n.output for c in consumers.get(o, []))
        ):
            inside.add(n.name)
    return [m for m in names if m in inside]


def _stem_conv(proto):
    # The first convolution (the only one fed by the image input, through the padding).
    return [n.name for n in proto.graph.node if n.op_type == "Conv"][:1]


def quantize(
    float_path,
    output_path,
    images,
    per_channel=True,
    target=DEFAULT_INT8_TARGET,
    method=DEFAULT_CALIBRATION_METHOD,
    keep_float=DEFAULT_KEEP_FLOAT,
):
    """Writes the statically quantised (QDQ) version of the float32 export `float_path`.

    Args:
        float_path: a float32 export (one input `images`, one output `features`).
        output_path: the int8 `.onnx` to write.
        images: calibration batch, float32 `(N, H, W, 3)` (or `(N, 3, H, W)`
            for an NCHW export), laid out as the graph takes it.
        per_channel: one weight scale per output channel.
        target: `"tensorrt"`: symmetric int8 activations and weights (every zero point 0), the only
            Q/DQ TensorRT builds, and ONNX Runtime runs it too; `"onnxruntime"`: uint8 activations
            with zero points (ONNX Runtime's default), which TensorRT refuses.
        method: activation ranges from `"minmax"` or `"percentile"` (99.999th) calibration.
        keep_float: which nodes stay float32: `"tail"` (the L2 normalisation only), `"attention"`
            (also the attention units and the embedding heads: small, and where int8 errors
            hurt the features most), `"attention+stem"` (also the first convolution).

    Returns:
        Names of the nodes kept in float32.
    """
    if target not in INT8_TARGETS:
        raise ValueError(f"target must be one of {INT8_TARGETS}, got {target!r}.")
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"method must be one of {CALIBRATION_METHODS}, got {method!r}.")
    if keep_float not in KEEP_FLOAT:
        raise ValueError(f"keep_float must be one of {KEEP_FLOAT}, got {keep_float!r}.")
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    images = np.asarray(images, np.float32)
    starts = list(range(0, len(images), CALIBRATION_BATCH))

    class Batches(CalibrationDataReader):
        # ONNX Runtime's strided calibration: `set_range` picks batches, `get_next` walks them.
        def __init__(self):
            self.set_range(0, len(starts))

        def __len__(self):
            return len(starts)

        def set_range(self, start_index, end_index):
            self.pending = iter(starts[start_index:end_index])

        def get_next(self):
            start = next(self.pending, None)
            return None if start is None else {"images": images[start : start + CALIBRATION_BATCH]}

    tmp = tempfile.mkdtemp(prefix="keras_mmga_int8_")
    try:
        # Shape inference and ONNX Runtime's graph optimisations first, as its quantisation guide asks.
        prepared = os.path.join(tmp, "prepared.onnx")
        quant_pre_process(os.fspath(float_path), prepared, skip_symbolic_shape=True)
        proto = onnx.load(prepared)
        kept = _float_tail_nodes(proto)
        if keep_float != "tail":
            kept += [n for n in _attention_nodes(proto) if n not in kept]
        if keep_float == "attention+stem":
            kept += [n for n in _stem_conv(proto) if n not in kept]
        symmetric = target == "tensorrt"
        # TensorRT: symmetric int8 everywhere, and float32 biases (it takes no int32 bias Q/DQ).
        extra = {"ActivationSymmetric": symmetric, "WeightSymmetric": True, "QuantizeBias": not symmetric}
        if method == "minmax":
            extra["CalibStridedMinMax"] = 1
        else:
            # Histogram methods hold every batch's histograms; fine at the default 128 images.
            extra["CalibPercentile"] = 99.999
        quantize_static(
            prepared,
            os.fspath(output_path),
            Batches(),
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=kept,
            extra_options=extra,
            calibrate_method={"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile}[method],
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return kept


def _session(path):
    import onnxruntime as ort

    return ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])


def _features(session, images):
    return np.concatenate(
        [session.run(["features"], {"images": images[i : i + 32]})[0] for i in range(0, len(images), 32)]
    )


def compare(float_path, int8_path, images):
    """Cosine figures of int8 vs float32 features of `images` (the graph's layout)."""
    cos = cosine_similarity(_features(_session(int8_path), images), _features(_session(float_path), images))
    return {
        "mean": float(cos.mean()),
        "min": float(cos.min()),
        "p05": float(np.percentile(cos, 5)),
        "images": int(len(cos)),
    }


def rank_accuracy(onnx_paths, dataset, dataset_name="market1501"):
    """rank-1 / mAP of each export on a dataset's query and gallery (flip-averaged features, as `evaluate`).

    Args:
        onnx_paths: `{"float32": path, "int8": path}`.
        dataset: a Market-1501 / DukeMTMC-reID layout folder.

    Returns:
        `{name: {"rank1": ..., "mAP": ...}}` in percent.
    """
    from keras_mmga.data.market import load_dataset
    from keras_mmga.evaluation import feature_metrics

    data = load_dataset(dataset, dataset_name, verbose=False)
    results = {}
    for name, path in onnx_paths.items():
        # One session per export, for its input layout and all four feature passes.
        session = _session(path)
        shape = session.get_inputs()[0].shape
        layout = graph_layout(shape)
        image_size = tuple(shape[2:4]) if layout == "NCHW" else tuple(shape[1:3])

        def features(samples, session=session, layout=layout, image_size=image_size):
            images = load_images([s[0] for s in samples], image_size)
            if layout == "NCHW":
                images = images.transpose(0, 3, 1, 2)
                flipped = images[..., ::-1]
            else:
                flipped = images[:, :, ::-1]
            f = _features(session, images) + _features(session, np.ascontiguousarray(flipped))
            return f / np.linalg.norm(f, axis=1, keepdims=True)

        q, g = data.query, data.gallery
        result = feature_metrics(
            features(q), features(g), [s[1] for s in q], [s[1] for s in g], [s[2] for s in q], [s[2] for s in g]
        )
        results[name] = {"rank1": 100.0 * float(result["cmc"][0]), "mAP": 100.0 * float(result["mAP"])}
    return results


def export_int8(
    model_or_path,
    output_path,
    calibration,
    calibration_count=DEFAULT_CALIBRATION_COUNT,
    min_cosine=DEFAULT_MIN_COSINE,
    per_channel=True,
    dataset=None,
    dataset_name="market1501",
    nchw=False,
    opset=None,
    float_path=None,
    log=None,
    target=DEFAULT_INT8_TARGET,
    method=DEFAULT_CALIBRATION_METHOD,
    keep_float=DEFAULT_KEEP_FLOAT,
):
    """Exports a model to int8 ONNX, calibrated on `calibration`, and checks it against float32.

    Args:
        model_or_path: an `MMGA` or a `.keras` path (as `export_onnx` takes).
        output_path: the int8 `.onnx` file; its model card `NAME.json` is written beside it.
        calibration: a folder of the user's images (searched recursively), or a list of image paths.
        calibration_count: how many of them calibrate (evenly spaced in name order) and check accuracy.
        min_cosine: the export fails (`AccuracyError`, file removed) when the mean cosine similarity of
            int8 and float32 features on the calibration images is below this.
        per_channel: one weight scale per output channel (see `quantize`).
        target, method, keep_float: see `quantize` (defaults: TensorRT-loadable symmetric int8,
            MinMax ranges, attention units and heads in float32).
        dataset: optional Market-1501-layout folder: rank-1 / mAP of both models go in the card.
        dataset_name: its file-name layout, `"market1501"` or `"dukemtmcreid"`.
        nchw, opset: as `export_onnx`.
        float_path: also keep the float32 export there (default: a temporary file).
        log: optional callable told each step that takes seconds, one line each.

    Returns:
        Dict with `onnx_path`, `card_path`, `card`, `cosine` and `float32` (the float32 export's result).
    """
    from keras_mmga.export.onnx_export import DEFAULT_OPSET, export_onnx

    output_path = os.fspath(output_path)
    if not output_path.endswith(".onnx"):
        raise ValueError(f"output_path must end with .onnx, got {output_path!r}.")
    from keras_mmga.run_lock import check_output_file

    check_output_file(output_path, "output_path (--output)")
    check_output_file(card_path_for(output_path), "the model card")
    if not 0.0 < float(min_cosine) <= 1.0:
        raise ValueError(f"min_cosine must be in (0, 1], got {min_cosine}.")
    log = log or (lambda line: None)
    if isinstance(calibration, (str, os.PathLike)):
        paths = calibration_paths(calibration, calibration_count)
    else:
        paths = [os.fspath(p) for p in calibration][: int(calibration_count)]
        if not paths:
            raise ValueError("No calibration images given.")
    for path in paths:
        read_image(path)  # a bad file fails now, not after the conversion
    if dataset is not None and not os.path.isdir(dataset):
        raise FileNotFoundError(f"Dataset folder not found: {os.fspath(dataset)!r}.")

    tmp = tempfile.mkdtemp(prefix="keras_mmga_int8_")
    try:
        fp32_path = os.fspath(float_path) if float_path else os.path.join(tmp, "float32.onnx")
        fp32 = export_onnx(
            model_or_path, fp32_path, opset=opset or DEFAULT_OPSET, nchw=nchw, write_card=bool(float_path), log=log
        )
        h, w = fp32["input_shape"][2:4] if nchw else fp32["input_shape"][1:3]
        images = load_images(paths, (h, w))
        if nchw:
            images = np.ascontiguousarray(images.transpose(0, 3, 1, 2))
        os.makedirs(os.path.dirname(output_path) or ".", exist_ok=True)
        log(f"quantising to int8, calibrated on {len(paths)} images ...")
        kept_float = quantize(fp32_path, output_path, images, per_channel, target, method, keep_float)
        try:
            cosine = compare(fp32_path, output_path, images)
            if not cosine["mean"] >= float(min_cosine):  # NaN fails too
                raise AccuracyError(
                    f"int8 features are too far from float32: mean cosine {cosine['mean']:.4f} "
                    f"(min {cosine['min']:.4f}) on {cosine['images']} calibration images, below the threshold "
                    f"{float(min_cosine):g} (--min-cosine / min_cosine); {output_path!r} was removed. Lower "
                    f"--min-cosine to at most {cosine['mean']:.4f} to keep this model, or calibrate on more "
                    "typical images."
                )
            ranks = (
                rank_accuracy({"float32": fp32_path, "int8": output_path}, dataset, dataset_name)
                if (dataset is not None)
                else None
            )
        except Exception:
            os.remove(output_path)
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    import onnx

    card = dict(fp32["card"])
    acts = "symmetric int8 activations (zero point 0)" if target == "tensorrt" else "uint8 activations"
    card["precision"] = (
        f"int8 (QDQ: {'per-channel' if per_channel else 'per-tensor'} int8 weights, {acts}; "
        f"float32 input, output and kept nodes ({keep_float}))"
    )
    card["num_nodes"] = len(onnx.load(output_path).graph.node)
    card["int8"] = {
        "quantisation": "onnxruntime.quantization.quantize_static, QDQ, "
        + ("per-channel" if per_channel else "per-tensor")
        + " weights",
        "target": target,
        "keep_float": keep_float,
        "calibration": {
            "images": len(paths),
            "method": method,
            "source": os.path.abspath(calibration) if isinstance(calibration, (str, os.PathLike)) else "list of paths",
            "preprocessing": "decoded, bilinear resize to H x W, float32 RGB [0, 255] (as training)",
        },
        "kept_float32": kept_float,
        "cosine_vs_float32": cosine,
        "min_cosine": float(min_cosine),
        "rank_accuracy": ranks,
    }
    card_path = card_path_for(output_path)
    write_model_card(card_path, card)
    return {"onnx_path": output_path, "card_path": card_path, "card": card, "cosine": cosine, "float32": fp32}
