"""ONNX export of every variant: names, shapes, parity, nothing training-only, TensorRT ops."""

import json

import keras
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from keras_mmga import MMGA, VARIANTS, tensorrt_ops
from keras_mmga.export import FP16_TOLERANCE, export_onnx, inference_function

SHAPE = (64, 32, 3)
NUM_CLASSES = 37  # no layer of the inference graph has a 37-wide axis


def _images(n, seed=0):
    return np.random.RandomState(seed).uniform(0, 255, (n,) + SHAPE).astype("float32")


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx")
    result = {}
    for variant in VARIANTS:
        keras.utils.set_random_seed(0)
        model = MMGA(NUM_CLASSES, variant=variant, input_shape=SHAPE, backbone_weights=None)
        model.save(out / f"{variant}.keras")
        result[variant] = (model, export_onnx(out / f"{variant}.keras", out / f"{variant}.onnx"))
    return result


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_one_input_one_output_dynamic_batch_and_parity(exports, variant):
    model, info = exports[variant]
    proto = onnx.load(info["onnx_path"])
    assert [i.name for i in proto.graph.input] == ["images"]
    assert [o.name for o in proto.graph.output] == ["features"]
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert not dims[0].HasField("dim_value") and [d.dim_value for d in dims[1:]] == [64, 32, 3]
    session = ort.InferenceSession(info["onnx_path"], providers=["CPUExecutionProvider"])
    for n in (1, 5):
        x = _images(n, seed=n)
        got = session.run(["features"], {"images": x})[0]
        assert got.shape == (n, model.feature_dim)
        np.testing.assert_allclose(got, keras.ops.convert_to_numpy(model(x)), atol=1e-4)
    assert info["max_abs_diff"] <= 1e-4
    card = json.loads(open(info["card_path"]).read())
    assert card["variant"] == variant and card["input"]["shape"] == ["N", 64, 32, 3] and len(card["source_sha256"]) == 64


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_graph_has_only_inference_and_tensorrt_ops(exports, variant):
    proto = onnx.load(exports[variant][1]["onnx_path"])
    # The classifiers (1024 x 37) would be the only initializers with a 37-wide axis.
    shapes = [tuple(init.dims) for init in proto.graph.initializer]
    assert not any(NUM_CLASSES in s for s in shapes)
    assert tensorrt_ops.unsupported_ops(proto) == []


def test_inference_graph_is_smaller_than_training_graph(exports, tmp_path):
    import tensorflow as tf
    import tf2onnx

    model, info = exports["mmga"]

    @tf.function(input_signature=[tf.TensorSpec((None,) + SHAPE, tf.float32, name="images")])
    def training_outputs(images):
        out = model(images, training=True)
        return {"features": out["features"], "whole_logits": out["whole_logits"],
                "local_logits": out["local_logits"], **out["attention_maps"]}

    train_proto, _ = tf2onnx.convert.from_function(training_outputs, input_signature=training_outputs.input_signature, opset=17)
    inference = onnx.load(info["onnx_path"])
    assert len(train_proto.graph.output) == 7 and len(inference.graph.output) == 1
    assert len(inference.graph.node) < len(train_proto.graph.node)


def test_nchw_and_fp16(exports, tmp_path):
    model, _ = exports["mmga"]
    x = _images(3)
    expected = keras.ops.convert_to_numpy(model(x))
    nchw = export_onnx(model, tmp_path / "nchw.onnx", nchw=True, write_card=False)
    session = ort.InferenceSession(nchw["onnx_path"], providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[1:] == [3, 64, 32]
    np.testing.assert_allclose(session.run(["features"], {"images": x.transpose(0, 3, 1, 2).copy()})[0], expected, atol=1e-4)
    half = export_onnx(model, tmp_path / "fp16.onnx", fp16=True, write_card=False)
    proto = onnx.load(half["onnx_path"])
    assert any(init.data_type == onnx.TensorProto.FLOAT16 for init in proto.graph.initializer)
    session = ort.InferenceSession(half["onnx_path"], providers=["CPUExecutionProvider"])
    got = session.run(["features"], {"images": x})[0]
    np.testing.assert_allclose(got, expected, atol=FP16_TOLERANCE)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-3)


def test_mixed_precision_model_exports_in_float32(tmp_path):
    keras.utils.set_random_seed(0)
    model = MMGA(NUM_CLASSES, variant="wmga", input_shape=SHAPE, backbone_weights=None, dtype="mixed_bfloat16")
    model.save(tmp_path / "mixed.keras")
    info = export_onnx(tmp_path / "mixed.keras", tmp_path / "mixed.onnx")
    proto = onnx.load(info["onnx_path"])
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert all(init.data_type != onnx.TensorProto.BFLOAT16 for init in proto.graph.initializer)
    assert info["max_abs_diff"] <= 1e-4  # against the float32 copy of the same weights


def test_inference_function_input_name():
    model = MMGA(3, variant="baseline", input_shape=SHAPE, backbone_weights=None)
    fn = inference_function(model)
    assert fn.input_signature[0].name == "images" and fn.input_signature[0].shape.as_list() == [None, 64, 32, 3]
    with pytest.raises(ValueError, match="opset"):
        export_onnx(model, "/tmp/never.onnx", opset=30)
