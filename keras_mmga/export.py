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

Example:
>>> from keras_mmga.export import export_onnx
>>> info = export_onnx("runs/market_mmga/best.keras", "exported/mmga_market.onnx")
>>> info["max_abs_diff"] <= 1e-4
True
"""

import contextlib
import json
import os

import keras
import numpy as np

from keras_mmga.image_io import sha256
from keras_mmga.memory import release_freed_memory

# tf2onnx 1.17 tests opsets 14-18; the TensorRT 8.5 ONNX parser documents
# opsets up to 17 (`tensorrt_ops.MAX_OPSET`), so 17 is the default that both
# ONNX Runtime and TensorRT accept. 18 is allowed for newer runtimes.
DEFAULT_OPSET = 17
MIN_OPSET, MAX_OPSET = 13, 18

# ONNX Runtime vs Keras, float32 graph, on unit-length features. Measured
# ~1e-7 here (see the model card); the bound leaves room for other CPUs' kernels.
FP32_TOLERANCE = 1e-4
# Float16 graph (`fp16=True`) vs the float32 Keras model, per feature component
# of unit-length features. Weights and activations are rounded to 11
# significant bits (relative error ~5e-4 per operation, accumulating over ~50
# layers); measured 1e-3 to 4e-3 on random-weight models. Cosine similarity to
# the float32 feature stays above 0.999.
FP16_TOLERANCE = 1e-2

INPUT_NAME, OUTPUT_NAME = "images", "features"


# What the graph does to the pixels before the backbone, for the card.
_PREPROCESSING = {
    "caffe": "in the graph: RGB -> BGR, minus the ImageNet mean (103.939, 116.779, 123.68), no scaling",
    "torch": "in the graph: minus (123.675, 116.28, 103.53), divided by (58.395, 57.12, 57.375), RGB",
}


class ParityError(RuntimeError):
    """ONNX Runtime and Keras disagree by more than the tolerance."""


# --------------------------------------------------------------------- model
def float32_inference_copy(model):
    """A float32 copy of `model` built outside any distribution strategy.

    A model trained under mixed precision computes in float16/bfloat16, and one
    built in a `MirroredStrategy` scope holds mirrored variables (and maybe
    synchronised BatchNormalization); neither belongs in a deployable graph.
    The copy is rebuilt from `get_config()` under the float32 policy with plain
    BatchNormalization (identical weights and inference behaviour) and gets the
    source's weights as float32.

    Args:
        model: a built Keras model whose class round-trips through `get_config`.

    Returns:
        The float32 copy.

    Example:
    >>> copy = float32_inference_copy(mixed_model)
    >>> copy.dtype_policy.name
    'float32'
    """
    import tensorflow as tf

    if tf.distribute.has_strategy() and tf.distribute.in_cross_replica_context():
        raise RuntimeError("Export outside `strategy.scope()`: a model built inside it would hold mirrored variables.")
    config = dict(model.get_config(), dtype="float32")
    if "sync_batchnorm" in config:
        config["sync_batchnorm"] = False
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")  # sub-layers built without an explicit dtype follow the global one
    try:
        clone = type(model).from_config(config)
    finally:
        keras.config.set_dtype_policy(previous)
    if not clone.built:
        clone.build((None,) + tuple(model.image_size) + (3,))
    source, target = model.weights, clone.weights
    if [tuple(w.shape) for w in source] != [tuple(w.shape) for w in target]:
        raise RuntimeError(f"Rebuilding {type(model).__name__} from its config gave different weights; cannot export.")
    clone.set_weights([np.asarray(keras.ops.convert_to_numpy(w), np.float32) for w in source])
    return clone


def inference_function(model, nchw=False):
    """The traced function that is exported: `images` → `{"features": ...}`.

    Args:
        model: a float32 model with `image_size`, called with `training=False`.
        nchw: take `(N, 3, H, W)` input (transposed in the graph; TensorRT and
            the ONNX optimiser fold the transpose into the first convolution).

    Returns:
        A `tf.function` with one `TensorSpec` named `images`, batch dynamic.

    Example:
    >>> fn = inference_function(model)
    >>> fn.input_signature[0].shape.as_list()
    [None, 384, 128, 3]
    """
    import tensorflow as tf

    h, w = model.image_size
    shape = (None, 3, h, w) if nchw else (None, h, w, 3)

    @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32, name=INPUT_NAME)])
    def features(images):
        if nchw:
            images = tf.transpose(images, (0, 2, 3, 1))
        return {OUTPUT_NAME: tf.cast(model(images, training=False), tf.float32)}

    return features


def training_function(model):
    """Every output of the training-mode call, flattened: for comparing graphs.

    `model(images, training=True)` returns features, logits and attention maps;
    converted to ONNX this is the graph the inference export must be a strict
    part of (see `tests/test_export.py`).

    Example:
    >>> proto = convert(training_function(model))
    >>> [o.name for o in proto.graph.output]
    ['attention_maps/module1_whole', ..., 'features', 'local_logits', 'whole_logits']
    """
    import tensorflow as tf

    h, w = model.image_size

    @tf.function(input_signature=[tf.TensorSpec((None, h, w, 3), tf.float32, name=INPUT_NAME)])
    def outputs(images):
        flat = {}
        for key, value in model(images, training=True).items():
            if isinstance(value, dict):
                flat.update({f"{key}/{k}": v for k, v in value.items()})
            else:
                flat[key] = value
        return flat

    return outputs


# ---------------------------------------------------------------- conversion
@contextlib.contextmanager
def _tf2onnx_raise_errors():
    # tf2onnx deep-copies the whole graph, weights included, before each of
    # its ~12 optimisers so that a failing one can be skipped; that is about a
    # third of the conversion time of a ResNet50. Any value of this variable
    # turns the copies off (an optimiser error then raises, see `convert`).
    key = "TF2ONNX_CATCH_ERRORS"
    old = os.environ.get(key)
    os.environ[key] = "FALSE"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


def convert(function, opset=DEFAULT_OPSET):
    """ONNX `ModelProto` of a `tf.function` with an input signature.

    A single input is named `images` and a single output `features`; several
    outputs keep the names of the function's output dict.

    Example:
    >>> proto = convert(inference_function(model))
    """
    import tf2onnx

    kwargs = dict(input_signature=function.input_signature, opset=int(opset))
    try:
        try:
            with _tf2onnx_raise_errors():
                proto, _ = tf2onnx.convert.from_function(function, **kwargs)
        except Exception:  # an optimiser failed: convert again, letting tf2onnx skip it
            proto, _ = tf2onnx.convert.from_function(function, **kwargs)
    finally:
        release_freed_memory()  # the conversion's ~4 GB, before anything else runs
    return _name_io(proto)


def _rename_tensor(graph, old, new):
    for node in graph.node:
        node.input[:] = [new if i == old else i for i in node.input]
        node.output[:] = [new if o == old else o for o in node.output]
    for value in list(graph.output) + list(graph.input) + list(graph.value_info):
        if value.name == old:
            value.name = new


def _name_io(proto):
    # tf2onnx names inputs after the TensorSpec and outputs after the dict
    # keys, in some versions with a ":0" suffix; the deployment contract is the
    # bare names.
    graph = proto.graph
    if len(graph.input) == 1 and graph.input[0].name != INPUT_NAME:
        _rename_tensor(graph, graph.input[0].name, INPUT_NAME)
    if len(graph.output) == 1 and graph.output[0].name != OUTPUT_NAME:
        _rename_tensor(graph, graph.output[0].name, OUTPUT_NAME)
    return proto


def unused_nodes(proto):
    """Nodes of `proto` whose outputs reach no graph output (dead code).

    An inference export must have none: a node that does not contribute to
    `features` could only be something training needs (a classifier, an
    attention-map output).

    Example:
    >>> unused_nodes(onnx.load("exported/mmga.onnx"))
    []
    """
    graph = proto.graph
    producer = {out: i for i, node in enumerate(graph.node) for out in node.output}
    needed, stack = set(), [producer[o.name] for o in graph.output if o.name in producer]
    while stack:
        i = stack.pop()
        if i in needed:
            continue
        needed.add(i)
        stack.extend(producer[name] for name in graph.node[i].input if name in producer)
    return [node for i, node in enumerate(graph.node) if i not in needed]


def dynamic_dims(proto):
    """`{tensor: [axes]}` of inputs, outputs and inferred intermediates whose size is unknown, batch axis excepted.

    TensorRT builds one optimisation profile per input shape range; the exports
    keep everything but the batch static so a profile on `images` is all an
    engine needs.

    Example:
    >>> dynamic_dims(onnx.load("exported/mmga.onnx"))
    {}
    """
    import onnx

    inferred = onnx.shape_inference.infer_shapes(proto)
    found = {}
    graph = inferred.graph
    for value in list(graph.input) + list(graph.output) + list(graph.value_info):
        if not value.type.HasField("tensor_type") or not value.type.tensor_type.HasField("shape"):
            continue
        dims = value.type.tensor_type.shape.dim
        # Rank-0/1 tensors are shapes and scalars; axis 0 of rank ≥ 2 tensors is the batch.
        loose = [axis for axis, d in enumerate(dims) if axis > 0 and not d.HasField("dim_value")]
        if loose:
            found[value.name] = loose
    return found


# -------------------------------------------------------------------- float16
# Ops whose float inputs and outputs simply follow the data type, so converting
# their float tensors to float16 is enough. Anything else makes `to_float16`
# refuse rather than write a graph that only fails in a runtime.
_FP16_OPS = frozenset(
    """Abs Add AveragePool BatchNormalization Cast Concat Constant Conv Div Erf Exp Expand Flatten Gather Gemm
    GlobalAveragePool GlobalMaxPool Identity LeakyRelu MatMul Max MaxPool Min Mul Neg Pad Pow ReduceMax ReduceMean
    ReduceSum ReduceSumSquare Relu Reshape Shape Sigmoid Slice Softmax Split Sqrt Squeeze Sub Tanh Tile Transpose
    Unsqueeze""".split()
)
# Ops of the L2 normalisation at the end of the graph; kept in float32.
_NORM_OPS = frozenset("Div Sqrt Max Clip ReduceSum ReduceSumSquare ReduceL2 LpNormalization Pow Reciprocal".split())


def _normalisation_tail(graph):
    # The L2 normalisation stays float32: the sum of 2048 squares overflows
    # float16 (max 65504) as soon as the components average above ~5.7, and
    # its 1e-12 floor is below float16's smallest subnormal.
    producer = {out: i for i, node in enumerate(graph.node) for out in node.output}
    tail, stack = set(), [producer[o.name] for o in graph.output if o.name in producer]
    while stack:
        i = stack.pop()
        node = graph.node[i]
        squaring = node.op_type == "Mul" and len(node.input) == 2 and node.input[0] == node.input[1]
        if i in tail or not (node.op_type in _NORM_OPS or squaring):
            continue
        tail.add(i)
        stack.extend(producer[name] for name in node.input if name in producer)
    return tail


def to_float16(proto):
    """A float16 version of a float32 graph with the same float32 interface.

    Weights and activations become float16; a `Cast` after the input keeps
    `images` float32, and the final L2 normalisation computes in float32 so
    `features` is float32 and unit-length (see `_normalisation_tail`). Written
    here because onnxconverter-common, which has the usual converter, is not a
    dependency.

    Args:
        proto: an `onnx.ModelProto` from `convert` (modified in place).

    Returns:
        `proto`.

    Example:
    >>> half = to_float16(convert(inference_function(model)))
    """
    import onnx
    from onnx import helper, numpy_helper

    graph = proto.graph
    tail = _normalisation_tail(graph)
    body = [i for i in range(len(graph.node)) if i not in tail]
    unknown = sorted({graph.node[i].op_type for i in body} - _FP16_OPS)
    if unknown:
        raise NotImplementedError(f"float16 conversion does not handle operators {unknown}.")
    float32 = onnx.TensorProto.FLOAT

    # Initializers: float16 copies for the body, the float32 original for the tail.
    users = {}
    for i, node in enumerate(graph.node):
        for name in node.input:
            users.setdefault(name, set()).add(i)
    initializers = []
    for init in graph.initializer:
        used = users.get(init.name, set())
        if init.data_type != float32 or not (used - tail):
            initializers.append(init)
            continue
        half_name = init.name if not (used & tail) else init.name + "__fp16"
        initializers.append(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), half_name))
        if used & tail:
            initializers.append(init)
            for i in used - tail:
                graph.node[i].input[:] = [half_name if n == init.name else n for n in graph.node[i].input]
    del graph.initializer[:]
    graph.initializer.extend(initializers)

    for i in body:
        node = graph.node[i]
        for attr in node.attribute:
            if node.op_type == "Cast" and attr.name == "to" and attr.i == float32:
                attr.i = onnx.TensorProto.FLOAT16
            if attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == float32:
                attr.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(attr.t).astype(np.float16), attr.t.name))

    casts_in, casts_out = [], []
    # float32 input -> float16 for the body.
    for value in graph.input:
        if value.type.tensor_type.elem_type == float32:
            half = value.name + "__fp16"
            for i in body:
                graph.node[i].input[:] = [half if n == value.name else n for n in graph.node[i].input]
            casts_in.append(helper.make_node("Cast", [value.name], [half], to=onnx.TensorProto.FLOAT16,
                                             name=value.name + "_to_fp16"))
    # Body tensors read by the tail (or that are graph outputs) -> float32.
    body_outputs = {out for i in body for out in graph.node[i].output}
    for i in sorted(tail):
        node = graph.node[i]
        node.input[:] = [n + "__fp32" if n in body_outputs else n for n in node.input]
    crossing = {n[: -len("__fp32")] for i in tail for n in graph.node[i].input if n.endswith("__fp32")}
    for value in graph.output:
        if value.name in body_outputs:  # no tail: cast the output itself
            half = value.name + "__fp16"
            for i in body:
                graph.node[i].output[:] = [half if n == value.name else n for n in graph.node[i].output]
                graph.node[i].input[:] = [half if n == value.name else n for n in graph.node[i].input]
            casts_out.append(helper.make_node("Cast", [half], [value.name], to=float32, name=value.name + "_to_fp32"))
    for name in sorted(crossing):
        casts_out.append(helper.make_node("Cast", [name], [name + "__fp32"], to=float32, name=name + "_to_fp32"))

    nodes = casts_in + [graph.node[i] for i in body] + casts_out + [graph.node[i] for i in sorted(tail)]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]  # stale float32 annotations; runtimes infer the types
    return proto


# -------------------------------------------------------------------- export
def _parity_images(image_size, parity_images):
    """4 random images, 2 synthetic people and the caller's images, float32 RGB (N, H, W, 3)."""
    from keras_mmga.data import synthetic
    from keras_mmga.deploy import preprocess

    h, w = image_size
    rng = np.random.RandomState(0)
    groups = {"random": rng.uniform(0, 255, (4, h, w, 3)).astype(np.float32)}
    people = []
    for _ in range(2):
        bgr, _ = synthetic.draw_person(rng, synthetic.make_identity(rng), synthetic.make_camera(rng))
        people.append(preprocess(bgr, (h, w), color="bgr"))
    groups["synthetic_person"] = np.stack(people)
    if parity_images is not None:
        if isinstance(parity_images, (str, os.PathLike)) or (
            isinstance(parity_images, np.ndarray) and parity_images.ndim == 3
        ):
            parity_images = [parity_images]
        groups["provided"] = np.stack([preprocess(x, (h, w), color="rgb") for x in parity_images])
    return groups


def parity(model, onnx_path, images, nchw=False):
    """Max |ONNX Runtime − Keras| over the features of `images`.

    Args:
        model: the Keras model (called with `training=False`).
        onnx_path: the exported file.
        images: float32 RGB `(N, H, W, 3)` in [0, 255].
        nchw: the export takes `(N, 3, H, W)`.

    Example:
    >>> parity(model, "exported/mmga.onnx", images)
    1.2e-07
    """
    import onnxruntime as ort

    images = np.asarray(images, np.float32)
    session = ort.InferenceSession(os.fspath(onnx_path), providers=["CPUExecutionProvider"])
    feed = np.ascontiguousarray(np.transpose(images, (0, 3, 1, 2)) if nchw else images)
    got = session.run([OUTPUT_NAME], {INPUT_NAME: feed})[0]
    expected = np.asarray(keras.ops.convert_to_numpy(model(images, training=False)), np.float32)
    if got.shape != expected.shape:
        raise ParityError(f"ONNX Runtime gave features of shape {got.shape}, Keras {expected.shape}.")
    return float(np.max(np.abs(got - expected)))


def card_path_for(onnx_path):
    """The model card written beside `onnx_path`: `NAME.onnx` → `NAME.json`."""
    return os.path.splitext(os.fspath(onnx_path))[0] + ".json"


def export_onnx(model_or_path, output_path, opset=DEFAULT_OPSET, nchw=False, fp16=False, parity_images=None,
                check=True, write_card=True):
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

    Returns:
        Dict with `onnx_path`, `card_path`, `max_abs_diff`, `input_shape`,
        `feature_dim`, `num_nodes` and the `card` itself.

    Example:
    >>> info = export_onnx("runs/market_mmga/best.keras", "exported/mmga_market.onnx", nchw=True)
    >>> info["input_shape"]
    (None, 3, 384, 128)
    """
    import onnx
    import tensorflow as tf
    import tf2onnx

    from keras_mmga.engine.evaluator import load_model

    if not MIN_OPSET <= int(opset) <= MAX_OPSET:
        raise ValueError(f"opset must be between {MIN_OPSET} and {MAX_OPSET}, got {opset}.")
    output_path = os.fspath(output_path)
    if not output_path.endswith(".onnx"):
        raise ValueError(f"output_path must end with .onnx, got {output_path!r}.")
    source = os.fspath(model_or_path) if isinstance(model_or_path, (str, os.PathLike)) else None
    source_model = load_model(model_or_path)
    for attribute in ("image_size", "get_config"):
        if not hasattr(source_model, attribute):
            raise TypeError(f"Cannot export a {type(source_model).__name__}: it has no `{attribute}`.")
    source_policy = source_model.dtype_policy.name
    model = float32_inference_copy(source_model)
    h, w = model.image_size

    proto = convert(inference_function(model, nchw), opset)
    graph = proto.graph
    if [i.name for i in graph.input] != [INPUT_NAME] or [o.name for o in graph.output] != [OUTPUT_NAME]:
        raise RuntimeError(f"Expected one input 'images' and one output 'features', got "
                           f"{[i.name for i in graph.input]} and {[o.name for o in graph.output]}.")
    if fp16:
        proto = to_float16(proto)
    os.makedirs(os.path.dirname(output_path) or ".", exist_ok=True)
    onnx.save(proto, output_path)

    diff, diff_source, counts = None, None, None
    if check:
        try:
            onnx.checker.check_model(output_path, full_check=True)
            dead = unused_nodes(proto)
            if dead:
                raise RuntimeError(f"The export has nodes that do not feed `features`: {[n.name for n in dead][:5]}.")
            groups = _parity_images((h, w), parity_images)
            images = np.concatenate(list(groups.values()))
            counts = {k: len(v) for k, v in groups.items()}
            diff = parity(model, output_path, images, nchw)
            tolerance = FP16_TOLERANCE if fp16 else FP32_TOLERANCE
            if not diff <= tolerance:  # NaN fails too
                raise ParityError(
                    f"ONNX Runtime differs from Keras by {diff:.3e} (> {tolerance:g}) on {len(images)} images; "
                    f"{output_path!r} was removed."
                )
            if source_policy != "float32":
                # How far the deployed float32 graph is from the model as trained.
                src = keras.ops.convert_to_numpy(source_model(images, training=False))
                diff_source = float(np.max(np.abs(np.asarray(src, np.float32) - keras.ops.convert_to_numpy(model(images)))))
        except Exception:
            os.remove(output_path)
            raise

    from keras_mmga import tensorrt_ops
    from keras_mmga.deploy import CARD_FORMAT  # what OnnxFeatureExtractor checks before trusting the card

    card = {
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
        "parity": {
            "max_abs_diff_vs_keras_float32": diff,
            "tolerance": FP16_TOLERANCE if fp16 else FP32_TOLERANCE,
            "images": counts,
            "runtime": "onnxruntime CPUExecutionProvider",
            "max_abs_diff_keras_float32_vs_source_policy": diff_source,
        },
        "tensorrt": {"problems": tensorrt_ops.check(proto), "checked_against": "onnx-tensorrt operator matrix, TensorRT 8.5"},
        "source": {"checkpoint": source, "sha256": sha256(source) if source else None, "dtype_policy": source_policy},
        "versions": _versions(tf, tf2onnx, onnx),
    }
    card_path = None
    if write_card:
        card_path = card_path_for(output_path)
        with open(card_path, "w") as f:
            json.dump(card, f, indent=2)
    return {
        "onnx_path": output_path,
        "card_path": card_path,
        "max_abs_diff": diff,
        "input_shape": (None, 3, h, w) if nchw else (None, h, w, 3),
        "feature_dim": model.feature_dim,
        "num_nodes": len(proto.graph.node),
        "card": card,
    }


def _versions(tf, tf2onnx, onnx):
    import onnxruntime

    import keras_mmga

    return {"keras_mmga": keras_mmga.__version__, "keras": keras.__version__, "tensorflow": tf.__version__,
            "tf2onnx": tf2onnx.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}
