"""`keras-mmga export`: a trained MMGA (.keras) to ONNX, image in, L2-normalised feature out.

Writes NAME.onnx and its model card NAME.json, after checking the graph
(onnx.checker, nothing but the feature path) and comparing ONNX Runtime with
Keras on random, synthetic-person and (with --images) real images. With
--int8 the float32 graph is statically quantised, calibrated on --calibration
images, and the check becomes an accuracy check: mean cosine similarity of
int8 and float32 features on those images (at least --min-cosine), and with
--data rank-1 / mAP of both. --output is the .onnx file, or a folder that
gets <model name>.onnx. Exits with status 1 when a check fails (the file is
removed), and with status 2 and a one-line message for a missing or invalid
model, output path, opset, --images or --calibration (checked before the
conversion).

--profile picks the input convention: default (RGB in [0, 255]), field
(NCHW, RGB / 255 normalised by the ImageNet mean / std, as torchreid,
fast-reid and BoxMOT feed) or boxmot (field, plus the tensor names and the
NAME.onnx.metadata.json sidecar BoxMOT's backends read). --format tflite writes
a LiteRT file instead (NHWC for the default profile, NCHW for field / boxmot;
float32, --fp16 or --int8 with --calibration), checked through the LiteRT
interpreter. --triton-repository DIR writes DIR/<name>/config.pbtxt and
DIR/<name>/1/model.onnx for Triton Inference Server.

Example:
    keras-mmga export --model runs/market_mmga/best.keras --profile boxmot
    keras-mmga export --model runs/market_mmga/best.keras --format tflite --int8 \
        --calibration Market-1501/bounding_box_train
    keras-mmga export --model runs/market_mmga/best.keras --triton-repository triton_models
    keras-mmga export --model runs/market_mmga/best.keras --output exported/mmga_market.onnx \
        --images Market-1501/query/0001_c1s1_001051_00.jpg
    keras-mmga export --model runs/market_mmga/best.keras --output exported/mmga_market_int8.onnx \
        --int8 --calibration Market-1501/bounding_box_train --calibration-count 256
"""

import os
import sys

from keras_mmga.cli.shared import add_model, model_from
from keras_mmga.settings import DATASETS

# Defaults restated here so `--help` imports nothing heavy; tests check they match the package's.
DEFAULT_OPSET, MIN_OPSET, MAX_OPSET = 17, 13, 18
DEFAULT_CALIBRATION_COUNT, DEFAULT_MIN_COSINE = 128, 0.99
INT8_TARGETS, DEFAULT_INT8_TARGET = ("onnxruntime", "tensorrt"), "onnxruntime"
CALIBRATION_METHODS, DEFAULT_CALIBRATION_METHOD = ("minmax", "percentile"), "minmax"
KEEP_FLOAT, DEFAULT_KEEP_FLOAT = ("tail", "attention", "attention+stem"), "attention"
PROFILES = ("default", "field", "boxmot")
DEFAULT_TRITON_MAX_BATCH, DEFAULT_TRITON_QUEUE_DELAY_US = 64, 500


def add_arguments(p):
    add_model(p, "a .keras file written by training")
    p.add_argument(
        "--output",
        help="the .onnx file, or a folder for <model name>.onnx (default: exported/; _int8.onnx with --int8)",
    )
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset, {MIN_OPSET}..{MAX_OPSET}")
    p.add_argument("--nchw", action="store_true", help="(N, 3, H, W) input instead of (N, H, W, 3)")
    p.add_argument("--fp16", action="store_true", help="float16 weights and activations (float32 input/output)")
    p.add_argument("--images", nargs="*", help="real images (files or folders) added to the parity check")
    p.add_argument(
        "--profile",
        default="default",
        choices=PROFILES,
        help="input convention: default = RGB [0, 255]; field = NCHW RGB/255 ImageNet mean/std "
        "(torchreid, fast-reid); boxmot = field + BoxMOT's names and metadata sidecar",
    )
    p.add_argument(
        "--format",
        default="onnx",
        choices=("onnx", "tflite"),
        help="onnx, or tflite (LiteRT; float32, --fp16 or --int8)",
    )
    t = p.add_argument_group("Triton")
    t.add_argument(
        "--triton-repository",
        metavar="DIR",
        help="write DIR/<name>/config.pbtxt and DIR/<name>/1/model.onnx (instead of --output)",
    )
    t.add_argument("--triton-name", help="the Triton model name (default: the model file's name)")
    t.add_argument("--triton-max-batch-size", type=int, default=DEFAULT_TRITON_MAX_BATCH, help="Triton max_batch_size")
    t.add_argument(
        "--triton-queue-delay-us",
        type=int,
        default=DEFAULT_TRITON_QUEUE_DELAY_US,
        help="dynamic batching's max_queue_delay_microseconds",
    )
    g = p.add_argument_group("int8")
    g.add_argument(
        "--int8",
        action="store_true",
        help="static int8 quantisation (QDQ, per-channel weights; float32 input, output and L2 norm)",
    )
    g.add_argument("--calibration", help="folder of your images (searched recursively) to calibrate and check on")
    g.add_argument(
        "--calibration-count",
        type=int,
        default=DEFAULT_CALIBRATION_COUNT,
        help="calibration images, evenly spaced in name order",
    )
    g.add_argument(
        "--min-cosine",
        type=float,
        default=DEFAULT_MIN_COSINE,
        help="fail when the mean cosine(int8, float32) on the calibration images is below this",
    )
    g.add_argument(
        "--int8-target",
        default=DEFAULT_INT8_TARGET,
        choices=INT8_TARGETS,
        help="onnxruntime: uint8 activations with zero points (ONNX Runtime's fast CPU kernels); "
        "tensorrt: symmetric int8 activations and weights, zero points 0 (what TensorRT builds)",
    )
    g.add_argument(
        "--calibration-method",
        default=DEFAULT_CALIBRATION_METHOD,
        choices=CALIBRATION_METHODS,
        help="how activation ranges are calibrated",
    )
    g.add_argument(
        "--keep-float",
        default=DEFAULT_KEEP_FLOAT,
        choices=KEEP_FLOAT,
        help="nodes left in float32: the L2 norm only (tail), also the attention units and heads, "
        "also the first convolution",
    )
    g.add_argument("--data", help="dataset root (Market-1501 layout): rank-1 / mAP of float32 and int8 in the card")
    g.add_argument("--dataset", default="market1501", choices=DATASETS, help="file-name layout of --data")


def image_paths(items):
    """The --images files (a folder: its first 8 images), each checked to decode.

    Checked up front so that a typo fails in a second, not after the
    minutes-long conversion; an empty folder is an error rather than a parity
    check silently run without the real images asked for.
    """
    from keras_mmga.image_io import IMAGE_SUFFIXES, list_images, read_image

    paths = []
    for item in items or []:
        if os.path.isdir(item):  # a folder: its first few images are enough for a parity check
            found = list_images(item)[:8]
            if not found:
                raise ValueError(f"--images folder {item!r} has no images ({', '.join(IMAGE_SUFFIXES)}).")
            paths += found
        elif os.path.exists(item):
            paths.append(item)
        else:
            raise FileNotFoundError(f"--images: no such file or folder: {item!r}.")
    for path in paths:
        read_image(path)  # FileNotFoundError / ValueError naming the file
    return paths or None


def _check_flags(a):
    if a.format == "tflite":
        given = [f for f, v in (("--nchw", a.nchw), ("--triton-repository", a.triton_repository)) if v]
        if given:
            raise ValueError(f"{', '.join(given)} do not apply to --format tflite (its layout follows --profile).")
    if a.triton_repository and (a.int8 or a.output):
        raise ValueError("--triton-repository writes its own model.onnx: it excludes --int8 and --output.")
    if a.int8 and a.format == "onnx" and a.profile != "default":
        raise ValueError(
            "--int8 ONNX exports take the default profile; for BoxMOT use the float32 or --fp16 "
            "export, or --format tflite --int8."
        )
    if a.int8:
        if a.fp16:
            raise ValueError("--int8 and --fp16 exclude each other.")
        if not a.calibration:
            raise ValueError("--int8 needs --calibration DIR (a folder of your images).")
        if a.images:
            raise ValueError(
                "--images is for the float32 / fp16 parity check; with --int8 the accuracy is "
                "checked on the --calibration images."
            )
        if not 0.0 < a.min_cosine <= 1.0:
            raise ValueError(f"--min-cosine must be in (0, 1], got {a.min_cosine}.")
        if a.calibration_count < 1:
            raise ValueError(f"--calibration-count must be positive, got {a.calibration_count}.")
    # The ONNX quantiser's choices (LiteRT quantises its own way): a value other than the default elsewhere
    # would be silently ignored.
    onnx_int8 = [
        f
        for f, v, d in (
            ("--int8-target", a.int8_target, DEFAULT_INT8_TARGET),
            ("--calibration-method", a.calibration_method, DEFAULT_CALIBRATION_METHOD),
            ("--keep-float", a.keep_float, DEFAULT_KEEP_FLOAT),
        )
        if v != d
    ]
    if onnx_int8 and not (a.int8 and a.format == "onnx"):
        raise ValueError(f"{', '.join(onnx_int8)} only apply with --int8 --format onnx.")
    if not a.int8:
        given = [f for f, v in (("--calibration", a.calibration), ("--data", a.data)) if v]
        if given:
            raise ValueError(f"{', '.join(given)} only apply with --int8.")


def _log(a):
    # Each step of tens of seconds is announced (stderr), unless --quiet.
    return None if a.quiet else (lambda line: print(line, file=sys.stderr, flush=True))


def output_path(model, output, int8=False, fp16=False, profile="default", fmt="onnx"):
    """The file of `--output`: the file itself, or `<folder>/<model name>[_fp16|_int8][_profile].<onnx|tflite>`.

    A folder is an existing one, or a path ending in a separator or without a suffix.
    (`_fp16` names only the .tflite, as before for the .onnx.)
    """
    ext = ".tflite" if fmt == "tflite" else ".onnx"
    precision = "_int8" if int8 else ("_fp16" if fp16 and fmt == "tflite" else "")
    name = (
        os.path.splitext(os.path.basename(model))[0] + precision + ("" if profile == "default" else f"_{profile}") + ext
    )
    if output is None:
        return os.path.join("exported", name)
    if os.path.isdir(output) or output.endswith(("/", os.sep)) or not os.path.splitext(output)[1]:
        return os.path.join(output, name)
    if not output.endswith(ext):
        raise ValueError(f"--output {output!r} must end with {ext} (a file) or be a folder.")
    return output


def _run_int8(a, output):
    from keras_mmga.export.int8 import AccuracyError, calibration_paths, export_int8

    paths = calibration_paths(a.calibration, a.calibration_count)  # missing / empty folder: before converting
    try:
        result = export_int8(
            a.model,
            output,
            paths,
            calibration_count=a.calibration_count,
            min_cosine=a.min_cosine,
            dataset=a.data,
            dataset_name=a.dataset,
            nchw=a.nchw,
            opset=a.opset,
            log=_log(a),
            target=a.int8_target,
            method=a.calibration_method,
            keep_float=a.keep_float,
        )
    except AccuracyError as err:
        print(f"export failed: {err}", file=sys.stderr)
        return 1
    card = result["card"]
    cosine = card["int8"]["cosine_vs_float32"]
    print(f"wrote {result['onnx_path']} ({card['num_nodes']} nodes) and {result['card_path']}")
    print(f"input images {card['input']['shape']} float32 RGB [0, 255] -> features {card['output']['shape']}")
    print(
        f"int8 vs float32 cosine on {cosine['images']} calibration images: mean {cosine['mean']:.4f}, "
        f"min {cosine['min']:.4f} (threshold {a.min_cosine:g})"
    )
    ranks = card["int8"]["rank_accuracy"]
    if ranks:
        print("  ".join(f"{name}: rank-1 {r['rank1']:.1f} mAP {r['mAP']:.1f}" for name, r in ranks.items()))
    return 0


def _run_tflite(a, output):
    from keras_mmga.export import ParityError
    from keras_mmga.export.tflite_export import TFLiteAccuracyError, export_tflite

    calibration = None
    if a.int8:
        from keras_mmga.export.int8 import calibration_paths

        calibration = calibration_paths(a.calibration, a.calibration_count)
    images = image_paths(a.images)
    precision = "int8" if a.int8 else ("float16" if a.fp16 else "float32")
    try:
        result = export_tflite(
            a.model,
            output,
            precision=precision,
            profile=a.profile,
            calibration=calibration,
            min_cosine=a.min_cosine,
            parity_images=images,
        )
    except (ParityError, TFLiteAccuracyError) as err:
        print(f"export failed: {err}", file=sys.stderr)
        return 1
    card = result["card"]
    print(f"wrote {result['tflite_path']} ({card['tflite']['bytes']} bytes, {precision}) and {result['card_path']}")
    if result["boxmot_metadata_path"]:
        print(f"wrote BoxMOT's sidecar {result['boxmot_metadata_path']}")
    if a.quiet:
        return 0
    print(f"input {card['input']['name']} {card['input']['shape']} float32: {card['input']['values']}")
    if a.int8:
        cos = result["cosine"]
        print(
            f"int8 vs Keras float32 cosine on {card['parity']['images']['calibration']} calibration images: "
            f"mean {cos['mean']:.4f}, min {cos['min']:.4f} (threshold {a.min_cosine:g})"
        )
    else:
        print(
            f"max |LiteRT - Keras| = {result['max_abs_diff']:.3e} over {card['parity']['images']} images "
            f"(tolerance {card['parity']['tolerance']:g})"
        )
    return 0


def _run_triton(a):
    from keras_mmga.export import ParityError
    from keras_mmga.export.triton import export_triton_repository

    try:
        result = export_triton_repository(
            a.model,
            a.triton_repository,
            name=a.triton_name,
            profile=a.profile,
            nchw=a.nchw,
            fp16=a.fp16,
            max_batch_size=a.triton_max_batch_size,
            queue_delay_us=a.triton_queue_delay_us,
            parity_images=image_paths(a.images),
            opset=a.opset,
        )
    except ParityError as e:
        print(f"export failed: {e}", file=sys.stderr)
        return 1
    info = result["export"]
    print(f"wrote {result['config_path']} and {result['onnx_path']} (Triton model {result['name']!r})")
    if not a.quiet:
        print(
            f"max |ONNX Runtime - Keras| = {info['max_abs_diff']:.3e}; serve with: "
            f"tritonserver --model-repository {a.triton_repository}"
        )
    return 0


def run(a):
    model_from(a, "export")
    from keras_mmga.run_lock import check_output_file

    _check_flags(a)
    output = output_path(a.model, a.output, a.int8, a.fp16, a.profile, a.format)
    # The model file, the output and the images before the conversion (tens of seconds).
    if not os.path.isfile(a.model):
        raise FileNotFoundError(
            f"Model file not found: {a.model!r}" + (" (a folder)" if os.path.isdir(a.model) else "")
        )
    if a.triton_repository:
        return _run_triton(a)
    check_output_file(output, "--output")
    if a.format == "tflite":
        return _run_tflite(a, output)
    if a.int8:
        return _run_int8(a, output)
    images = image_paths(a.images)
    from keras_mmga.export import ParityError, export_onnx

    try:
        result = export_onnx(
            a.model,
            output,
            opset=a.opset,
            nchw=a.nchw,
            fp16=a.fp16,
            parity_images=images,
            log=_log(a),
            profile=a.profile,
        )
    except ParityError as e:
        print(f"export failed: {e}", file=sys.stderr)
        return 1
    card = result["card"]
    print(f"wrote {result['onnx_path']} ({result['num_nodes']} nodes) and {result['card_path']}")
    if result.get("boxmot_metadata_path"):
        print(f"wrote BoxMOT's sidecar {result['boxmot_metadata_path']}")
    if a.quiet:
        return 0
    print(
        f"input {card['input']['name']} {card['input']['shape']} float32 ({card['input']['values']}) -> "
        f"{card['output']['name']} {card['output']['shape']}"
    )
    print(
        f"max |ONNX Runtime - Keras| = {result['max_abs_diff']:.3e} over {card['parity']['images']} images "
        f"(tolerance {card['parity']['tolerance']:g})"
    )
    problems = card["tensorrt"]["problems"]
    print("TensorRT parser: " + ("ready" if not problems else "; ".join(problems)))
    return 0
