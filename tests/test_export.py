"""ONNX export of every variant: names, shapes, batches, parity, nothing training-only, TensorRT readiness.

The expectations come from the spec, not from the exporter: feature widths per
variant, and how many dense layers (ONNX MatMul / Gemm) the inference path of
each variant has (1 or 3 embedding heads + 2 per channel-attention unit).
"""

import collections
import hashlib
import importlib.util
import json
import os

import keras
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tensorflow as tf
from factories import random_images
from onnx import TensorProto, helper, numpy_helper

from keras_mmga import MMGA, VARIANTS
from keras_mmga.deploy import CARD_FORMAT, OnnxFeatureExtractor
from keras_mmga.export import (
    FP16_TOLERANCE,
    ParityError,
    convert,
    dynamic_dims,
    export_onnx,
    float32_inference_copy,
    inference_function,
    tensorrt_ops,
    to_float16,
    training_function,
    unused_nodes,
)
from keras_mmga.export import onnx_export as export_lib  # where export_onnx looks up `convert` (patched below)

ROOT = os.path.join(os.path.dirname(__file__), "..")
SHAPE = (64, 32, 3)
NUM_CLASSES = 37  # no inference layer has a 37-wide axis: only the classifiers would
FEATURE_DIM = {"baseline": 1024, "baseline_att": 1024, "wmga": 1024, "dmga": 2048, "mmga": 2048}
# Dense layers on the inference path: embedding heads (whole [+ upper, bottom])
# + 2 per channel attention (module 1 + module-2 branches).
DENSE_LAYERS = {"baseline": 1, "baseline_att": 1 + 2 * 2, "wmga": 1 + 2 * 2, "dmga": 3 + 2 * 4, "mmga": 3 + 2 * 4}
CLASSIFIERS = {"baseline": 1, "baseline_att": 1, "wmga": 1, "dmga": 2, "mmga": 2}


def _images(n, seed=0):
    return random_images(n, SHAPE, seed)


def _keras(model, x):
    return np.asarray(keras.ops.convert_to_numpy(model(x, training=False)))


def _session(path):
    return ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])


def _dense_count(proto):
    return sum(node.op_type in ("MatMul", "Gemm") for node in proto.graph.node)


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """Every variant exported once (mmga from its .keras file, the others from memory)."""
    out = tmp_path_factory.mktemp("onnx")
    result = {}
    for variant in sorted(VARIANTS):
        keras.utils.set_random_seed(0)
        model = MMGA(NUM_CLASSES, variant=variant, input_shape=SHAPE, backbone_weights=None)
        source = model
        if variant == "mmga":
            source = out / "mmga.keras"
            model.save(source)
        info = export_onnx(source, out / f"{variant}.onnx")
        result[variant] = (model, info, onnx.load(info["onnx_path"]), _session(info["onnx_path"]))
    return result


def test_every_variant_is_exported():
    assert sorted(VARIANTS) == sorted(FEATURE_DIM)


@pytest.mark.slow
@pytest.mark.parametrize("variant", sorted(FEATURE_DIM))
def test_one_input_one_output_with_names_and_shapes(exports, variant):
    _, info, proto, session = exports[variant]
    (inp,), (out,) = proto.graph.input, proto.graph.output
    assert inp.name == "images" and out.name == "features"
    assert inp.type.tensor_type.elem_type == TensorProto.FLOAT == out.type.tensor_type.elem_type
    dims = inp.type.tensor_type.shape.dim
    assert not dims[0].HasField("dim_value")  # dynamic batch
    assert [d.dim_value for d in dims[1:]] == [64, 32, 3]
    out_dims = out.type.tensor_type.shape.dim
    assert not out_dims[0].HasField("dim_value") and out_dims[1].dim_value == FEATURE_DIM[variant]
    assert [i.name for i in session.get_inputs()] == ["images"] and [o.name for o in session.get_outputs()] == [
        "features"
    ]
    assert info["input_shape"] == (None, 64, 32, 3) and info["feature_dim"] == FEATURE_DIM[variant]


@pytest.mark.slow
@pytest.mark.parametrize("variant", sorted(FEATURE_DIM))
def test_batches_1_and_5_match_keras(exports, variant):
    model, info, _, session = exports[variant]
    x = _images(5, seed=3)
    five = session.run(["features"], {"images": x})[0]
    one = session.run(["features"], {"images": x[:1]})[0]
    assert five.shape == (5, FEATURE_DIM[variant]) and one.shape == (1, FEATURE_DIM[variant])
    expected = _keras(model, x)
    assert np.max(np.abs(five - expected)) <= 1e-4
    assert np.max(np.abs(one - expected[:1])) <= 1e-4
    np.testing.assert_allclose(np.linalg.norm(five, axis=1), 1.0, atol=1e-5)
    assert info["max_abs_diff"] <= 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("variant", sorted(FEATURE_DIM))
def test_graph_holds_only_the_feature_path(exports, variant):
    _, _, proto, _ = exports[variant]
    assert unused_nodes(proto) == []
    # The classifiers (embedding x 37) would be the only tensors with a 37-wide axis.
    assert not any(NUM_CLASSES in tuple(init.dims) for init in proto.graph.initializer)
    assert _dense_count(proto) == DENSE_LAYERS[variant]


@pytest.mark.slow
@pytest.mark.parametrize("variant", sorted(FEATURE_DIM))
def test_tensorrt_ready(exports, variant):
    _, info, proto, _ = exports[variant]
    ops = {node.op_type for node in proto.graph.node}
    assert ops <= tensorrt_ops.SUPPORTED, ops - tensorrt_ops.SUPPORTED
    assert tensorrt_ops.check(proto) == []
    assert dynamic_dims(proto) == {}  # only the batch axis is dynamic, intermediates included
    assert info["card"]["tensorrt"]["problems"] == []


@pytest.mark.slow
def test_model_card(exports, tmp_path):
    _, info, proto, _ = exports["mmga"]
    card = json.loads(open(info["card_path"]).read())
    assert info["card_path"] == info["onnx_path"][: -len(".onnx")] + ".json"
    keras_file = os.path.join(os.path.dirname(info["onnx_path"]), "mmga.keras")
    assert card["source"]["sha256"] == hashlib.sha256(open(keras_file, "rb").read()).hexdigest()
    assert card["variant"] == "mmga" and card["opset"] == 17
    assert card["format"] == CARD_FORMAT and OnnxFeatureExtractor(info["onnx_path"]).card == card  # deploy accepts it
    assert card["input"] == {
        "name": "images",
        "layout": "NHWC",
        "shape": ["N", 64, 32, 3],
        "dtype": "float32",
        "values": card["input"]["values"],
        "range": [0.0, 255.0],
        "mean": None,
        "std": None,
    }
    assert card["profile"] == "default" and card["runtime"] == "onnx"
    assert card["output"]["shape"] == ["N", 2048] and card["output"]["l2_normalised"]
    assert "103.939" in card["preprocessing"]
    assert card["parity"]["max_abs_diff_vs_keras_float32"] == info["max_abs_diff"] <= 1e-4
    assert card["parity"]["images"] == {"random": 4, "synthetic_person": 2}
    assert set(card["versions"]) >= {"keras", "tensorflow", "tf2onnx", "onnx"}
    assert card["versions"]["keras"] == keras.__version__ and card["num_nodes"] == len(proto.graph.node)
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [17]


@pytest.mark.slow
def test_inference_graph_is_the_training_graph_minus_training_outputs(exports):
    model, _, inference, _ = exports["mmga"]
    training = convert(training_function(model))
    outputs = sorted(o.name for o in training.graph.output)
    assert outputs == sorted(
        [
            "features",
            "whole_logits",
            "local_logits",
            "attention_maps/module1_whole",
            "attention_maps/module2_whole",
            "attention_maps/module2_upper",
            "attention_maps/module2_bottom",
        ]
    )
    assert [o.name for o in inference.graph.output] == ["features"]
    assert len(inference.graph.node) < len(training.graph.node)
    # The classifiers are in the training graph and nowhere in the inference graph.
    assert any(NUM_CLASSES in tuple(init.dims) for init in training.graph.initializer)
    assert _dense_count(training) - _dense_count(inference) == CLASSIFIERS["mmga"]


@pytest.mark.slow
def test_nchw_export(exports, tmp_path):
    model, _, _, _ = exports["baseline"]
    info = export_onnx(model, tmp_path / "nchw.onnx", nchw=True)
    session = _session(info["onnx_path"])
    assert session.get_inputs()[0].shape[1:] == [3, 64, 32] and info["input_shape"] == (None, 3, 64, 32)
    x = _images(5, seed=4)
    for n in (1, 5):
        got = session.run(["features"], {"images": np.ascontiguousarray(x[:n].transpose(0, 3, 1, 2))})[0]
        assert np.max(np.abs(got - _keras(model, x[:n]))) <= 1e-4
    proto = onnx.load(info["onnx_path"])
    assert tensorrt_ops.check(proto) == [] and dynamic_dims(proto) == {} and unused_nodes(proto) == []
    assert json.load(open(info["card_path"]))["input"]["layout"] == "NCHW"


@pytest.mark.slow
def test_fp16_export(exports, tmp_path, monkeypatch):
    model, fp32_info, _, _ = exports["mmga"]
    # The float32 conversion is tested above; reuse its graph (to_float16 and
    # the parity check are what this test is about).
    monkeypatch.setattr(export_lib, "convert", lambda fn, opset: onnx.load(fp32_info["onnx_path"]))
    info = export_onnx(model, tmp_path / "half.onnx", fp16=True)
    proto = onnx.load(info["onnx_path"])
    types = collections.Counter(init.data_type for init in proto.graph.initializer)
    weights = sum(int(np.prod(init.dims)) for init in proto.graph.initializer if init.data_type == TensorProto.FLOAT16)
    assert weights > 20_000_000 and types[TensorProto.FLOAT16] > types[TensorProto.FLOAT]
    assert os.path.getsize(info["onnx_path"]) < 0.6 * os.path.getsize(exports["mmga"][1]["onnx_path"])
    assert proto.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT  # same interface as fp32
    session = _session(info["onnx_path"])
    x = _images(5, seed=5)
    for n in (1, 5):
        got = session.run(["features"], {"images": x[:n]})[0]
        assert got.dtype == np.float32 and got.shape == (n, 2048)
        assert np.max(np.abs(got - _keras(model, x[:n]))) <= FP16_TOLERANCE
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-3)
        assert np.min(np.sum(got * _keras(model, x[:n]), axis=1)) > 0.999  # cosine to the fp32 feature
    assert info["max_abs_diff"] <= FP16_TOLERANCE
    assert tensorrt_ops.check(proto) == [] and dynamic_dims(proto) == {}


def _normalisation_graph(scale):
    """x * scale → L2-normalise, written the way the exports do it (sum of squares, floor, sqrt, divide)."""
    dim = 2048
    nodes = [
        helper.make_node("Mul", ["images", "scale"], ["x"]),
        helper.make_node("Mul", ["x", "x"], ["sq"]),
        helper.make_node("ReduceSum", ["sq", "axes"], ["ss"], keepdims=1),
        helper.make_node("Max", ["ss", "eps"], ["floored"]),
        helper.make_node("Sqrt", ["floored"], ["norm"]),
        helper.make_node("Div", ["x", "norm"], ["features"]),
    ]
    inits = [
        numpy_helper.from_array(np.full((dim,), scale, np.float32), "scale"),
        numpy_helper.from_array(np.array([1], np.int64), "axes"),
        numpy_helper.from_array(np.array(1e-12, np.float32), "eps"),
    ]
    graph = helper.make_graph(
        nodes,
        "norm",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", dim])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", dim])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_fp16_keeps_the_normalisation_in_float32():
    # Components ~50: the sum of 2048 squares (~5e6) overflows float16 (max 65504).
    x = np.random.RandomState(0).uniform(20, 80, (3, 2048)).astype(np.float32)
    proto = to_float16(_normalisation_graph(1.0))
    onnx.checker.check_model(proto, full_check=True)
    ops = [n.op_type for n in proto.graph.node]
    assert ops == ["Cast", "Mul", "Cast", "Mul", "ReduceSum", "Max", "Sqrt", "Div"]  # one cast in, one to float32
    got = _session_from_proto(proto).run(["features"], {"images": x})[0]
    expected = x / np.linalg.norm(x, axis=1, keepdims=True)
    assert np.all(np.isfinite(got)) and np.max(np.abs(got - expected)) < 1e-3
    # Control: the same graph computed entirely in float16 overflows.
    with np.errstate(over="ignore"):
        assert not np.isfinite(np.sum(x.astype(np.float16) ** 2, axis=1, dtype=np.float16)).any()


def _session_from_proto(proto):
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


def test_fp16_refuses_unknown_operators():
    proto = _normalisation_graph(1.0)
    proto.graph.node[0].op_type = "Resize"
    with pytest.raises(NotImplementedError, match="Resize"):
        to_float16(proto)


@pytest.mark.slow
def test_mixed_precision_distributed_model_exports_in_float32(tmp_path):
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    keras.utils.set_random_seed(2)
    with strategy.scope():
        model = MMGA(
            NUM_CLASSES,
            variant="wmga",
            input_shape=SHAPE,
            backbone_weights=None,
            dtype="mixed_bfloat16",
            sync_batchnorm=True,
        )
    model.save(tmp_path / "mixed.keras")
    with pytest.raises(RuntimeError, match="strategy.scope"):
        with strategy.scope():
            float32_inference_copy(model)
    # The in-memory copy: plain float32 variables with the same values.
    copy = float32_inference_copy(model)
    assert copy.dtype_policy.name == "float32" and not copy.sync_batchnorm
    assert all(w.dtype == "float32" and not isinstance(w.value, tf.distribute.DistributedValues) for w in copy.weights)
    for a, b in zip(model.weights, copy.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))

    info = export_onnx(tmp_path / "mixed.keras", tmp_path / "mixed.onnx")
    proto = onnx.load(info["onnx_path"])
    assert proto.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert {init.data_type for init in proto.graph.initializer} <= {
        TensorProto.FLOAT,
        TensorProto.INT64,
        TensorProto.INT32,
    }
    assert info["max_abs_diff"] <= 1e-4  # against the float32 copy
    x = _images(2, seed=6)
    assert np.max(np.abs(_session(info["onnx_path"]).run(["features"], {"images": x})[0] - _keras(copy, x))) <= 1e-4
    card = info["card"]
    assert card["source"]["dtype_policy"] == "mixed_bfloat16"
    # bfloat16 keeps 8 significant bits: the trained model is near, not equal.
    assert 0 < card["parity"]["max_abs_diff_keras_float32_vs_source_policy"] < 0.1


@pytest.mark.slow
def test_parity_failure_raises_and_removes_the_file(exports, tmp_path, monkeypatch):
    # Another model's graph under this model's name: the parity check must catch it.
    model = exports["baseline"][0]
    other = onnx.load(exports["baseline_att"][1]["onnx_path"])
    monkeypatch.setattr(export_lib, "convert", lambda fn, opset: other)
    with pytest.raises(ParityError, match="differs from Keras"):
        export_onnx(model, tmp_path / "bad.onnx")
    assert not os.path.exists(tmp_path / "bad.onnx") and not os.path.exists(tmp_path / "bad.json")


def test_bad_arguments(tmp_path):
    model = MMGA(3, variant="baseline", input_shape=SHAPE, backbone_weights=None)
    fn = inference_function(model)
    assert fn.input_signature[0].name == "images" and fn.input_signature[0].shape.as_list() == [None, 64, 32, 3]
    with pytest.raises(ValueError, match="opset"):
        export_onnx(model, tmp_path / "m.onnx", opset=30)
    with pytest.raises(ValueError, match=".onnx"):
        export_onnx(model, tmp_path / "m.pb")
    with pytest.raises(FileNotFoundError, match="missing.keras"):
        export_onnx(tmp_path / "missing.keras", tmp_path / "m.onnx")


def _script(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "scripts", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_export_script(exports, tmp_path, monkeypatch, capsys):
    model, info, proto, _ = exports["mmga"]
    keras_file = os.path.join(os.path.dirname(info["onnx_path"]), "mmga.keras")
    # The conversion itself is tested above; reuse its graph to keep the script test fast.
    monkeypatch.setattr(export_lib, "convert", lambda fn, opset: onnx.load(info["onnx_path"]))
    image = tmp_path / "person.png"
    import cv2

    cv2.imwrite(str(image), np.random.RandomState(0).randint(0, 256, (128, 64, 3), np.uint8))
    code = _script("export_onnx").main(
        ["--model", keras_file, "--output", str(tmp_path / "out" / "m.onnx"), "--images", str(image)]
    )
    captured = capsys.readouterr()
    printed = captured.out
    assert code == 0 and "max |ONNX Runtime - Keras| = " in printed and "TensorRT parser: ready" in printed
    # The seconds-long steps are announced on stderr.
    assert "converting to ONNX" in captured.err and "comparing ONNX Runtime with Keras" in captured.err
    card = json.load(open(tmp_path / "out" / "m.json"))
    assert card["parity"]["images"] == {"random": 4, "synthetic_person": 2, "provided": 1}


def test_export_script_bad_input_exits_2_before_converting(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(export_lib, "convert", lambda fn, opset: pytest.fail("converted despite bad input"))
    (tmp_path / "empty").mkdir()
    (tmp_path / "text.jpg").write_text("not an image")
    model = MMGA(3, variant="baseline", input_shape=SHAPE, backbone_weights=None)
    model.save(tmp_path / "m.keras")
    keras_file, out = str(tmp_path / "m.keras"), str(tmp_path / "m.onnx")
    script = _script("export_onnx")
    m = ["--model", keras_file]
    (tmp_path / "a_file.jpg").write_text("")
    for argv, message in [
        (["--model", str(tmp_path / "missing.keras"), "--output", out], "Model file not found"),
        (m + ["--output", str(tmp_path / "m.pb")], "must end with .onnx"),
        (m + ["--output", out, "--opset", "30"], "opset must be between"),
        (m + ["--output", out, "--images", str(tmp_path / "absent")], "--images: no such file or folder"),
        (m + ["--output", out, "--images", str(tmp_path / "empty")], "has no images"),
        (m + ["--output", out, "--images", str(tmp_path / "text.jpg")], "Cannot decode"),
        # Outputs that cannot be written, refused before the conversion.
        (m + ["--output", str(tmp_path / "a_file.jpg" / "x.onnx")], "is a file, not a folder"),
        ([keras_file, "--output", out], "the model is given with --model"),
    ]:
        assert script.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1, err
    assert not os.path.exists(out)
