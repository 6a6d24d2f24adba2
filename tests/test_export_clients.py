"""The deployment clients' contracts: the field / BoxMOT input profile, the LiteRT export, the Triton repository.

The expectations come from the clients, not from the exporter: BoxMOT 25.0.0's
crop preparation (boxmot/reid/core/crops.py: RGB / 255, ImageNet mean / std,
NCHW float32), its ONNX backend's checks (rank-4, 3 channels on axis 1, fixed
H x W), its sidecar (boxmot/reid/core/artifacts.py: `<file>.metadata.json`
with `model_name` and `model_kwargs.img_size`), its TensorRT backend's
preferred names (`images`, `output0`), and Triton's own `model_config_pb2`.
BoxMOT itself is exercised by benchmarks/check_boxmot.py (it needs PyTorch).
"""

import json
import os

import keras
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from keras_mmga import MMGA
from keras_mmga.cli import main as cli_main
from keras_mmga.deploy import OnnxFeatureExtractor
from keras_mmga.export import (
    export_onnx,
    export_tflite,
    export_triton_repository,
    field_images,
    profiles,
    triton_config,
)
from keras_mmga.export.tflite_export import interpreter, run_tflite

SHAPE = (64, 32, 3)
FEATURE_DIM = 1024  # the baseline variant


def _images(n, seed=0):
    return np.random.RandomState(seed).uniform(0, 255, (n,) + SHAPE).astype("float32")


def _keras(model, x):
    return np.asarray(keras.ops.convert_to_numpy(model(x, training=False)))


def _model(preprocessing="caffe"):
    keras.utils.set_random_seed(0)
    return MMGA(7, variant="baseline", input_shape=SHAPE, backbone_weights=None, preprocessing=preprocessing)


@pytest.fixture(scope="module")
def caffe_model():
    return _model("caffe")


@pytest.fixture(scope="module")
def source(caffe_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("source") / "mmga_market.keras"
    caffe_model.save(path)
    return path


@pytest.fixture(scope="module")
def triton_repository(source, tmp_path_factory):
    # The one boxmot ONNX export of this module: a Triton repository's model.onnx is `export_onnx`'s file
    # (card, sidecar), so the BoxMOT tests read it too.
    return export_triton_repository(
        source,
        tmp_path_factory.mktemp("triton") / "repo",
        name="mmga_market",
        profile="boxmot",
        max_batch_size=16,
        queue_delay_us=250,
    )


@pytest.fixture(scope="module")
def boxmot_export(triton_repository):
    return triton_repository["export"]


@pytest.fixture(scope="module")
def float32_tflite(caffe_model, tmp_path_factory):
    return export_tflite(caffe_model, tmp_path_factory.mktemp("tflite") / "m.tflite")


@pytest.fixture(scope="module")
def boxmot_tflite_cli(source, tmp_path_factory):
    """The CLI's default-named boxmot .tflite (one conversion, read by the LiteRT and the CLI tests)."""
    import contextlib
    import io

    folder, printed = tmp_path_factory.mktemp("cli"), io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(printed):
        mp.chdir(folder)
        code = cli_main(["export", "--model", str(source), "--format", "tflite", "--profile", "boxmot"])
    return code, folder / "exported", printed.getvalue()


def _boxmot_feed(x):
    # What BoxMOT feeds, computed here in float32 by hand (not with the package's field_images / graph_input).
    feed = ((x / 255.0 - np.float32([0.485, 0.456, 0.406])) / np.float32([0.229, 0.224, 0.225])).transpose(0, 3, 1, 2)
    return np.ascontiguousarray(feed, np.float32)


# ------------------------------------------------------------ input contract (no conversion)
def test_field_input_is_boxmots_crop_preparation():
    # One pixel worked by hand: BoxMOT divides by 255, subtracts (0.485, 0.456, 0.406),
    # divides by (0.229, 0.224, 0.225).
    rgb = np.zeros((1, 2, 1, 3), np.float32)
    rgb[0, 0, 0] = (255, 0, 127.5)
    x = field_images(rgb)
    assert x.shape == (1, 3, 2, 1) and x.dtype == np.float32  # NCHW
    np.testing.assert_allclose(x[0, :, 0, 0], [(1 - 0.485) / 0.229, -0.456 / 0.224, (0.5 - 0.406) / 0.225], rtol=1e-6)
    np.testing.assert_allclose(x[0, :, 1, 0], [-0.485 / 0.229, -0.456 / 0.224, -0.406 / 0.225], rtol=1e-6)
    # The one conversion every check and the extractor feed through: the field's values, or raw [0, 255] pixels.
    from keras_mmga.preprocessing import graph_input

    np.testing.assert_array_equal(graph_input(rgb, "NCHW", normalised=True), x)
    assert graph_input(rgb, "NCHW").tolist() == [[[[255.0], [0.0]], [[0.0], [0.0]], [[127.5], [0.0]]]]
    assert graph_input(rgb, "NHWC").tolist() == rgb.tolist()
    assert profiles.layout("default") == "NHWC" and profiles.layout("default", nchw=True) == "NCHW"
    assert profiles.layout("field") == profiles.layout("boxmot") == "NCHW"


def test_profile_contract_is_pinned():
    assert profiles.PROFILES == ("default", "field", "boxmot")
    assert profiles.IMAGENET_MEAN == (0.485, 0.456, 0.406) and profiles.IMAGENET_STD == (0.229, 0.224, 0.225)
    # BoxMOT's exporter names the output output0, its TensorRT backend looks for images / output / output0.
    assert profiles.TENSOR_NAMES["boxmot"] == ("images", "output0")
    assert profiles.TENSOR_NAMES["default"] == profiles.TENSOR_NAMES["field"] == ("images", "features")
    for profile in ("field", "boxmot"):
        c = profiles.input_contract(profile, (256, 128))
        assert (c["layout"], c["shape"], c["dtype"], c["range"]) == ("NCHW", ["N", 3, 256, 128], "float32", [0.0, 1.0])
        assert (c["mean"], c["std"]) == ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    c = profiles.input_contract("default", (256, 128))
    assert (c["layout"], c["range"], c["mean"]) == ("NHWC", [0.0, 255.0], None)
    with pytest.raises(ValueError, match="profile must be one of"):
        profiles.check_profile("torchreid")


def test_model_preprocessing_constants_match_the_backbone():
    from keras_mmga.models import mmga_backbone

    # Keras' imagenet_utils "caffe" (BGR means) and "torch" (RGB mean / std of 255-scaled pixels), written out.
    assert profiles._CAFFE_BGR_MEAN == (103.939, 116.779, 123.68)
    assert profiles._TORCH_RGB_MEAN == (123.675, 116.28, 103.53)
    assert profiles._TORCH_RGB_STD == (58.395, 57.12, 57.375)
    assert profiles._CAFFE_BGR_MEAN == mmga_backbone._CAFFE_BGR_MEAN
    assert profiles._TORCH_RGB_MEAN == mmga_backbone._TORCH_RGB_MEAN
    assert profiles._TORCH_RGB_STD == mmga_backbone._TORCH_RGB_STD


@pytest.mark.parametrize("mode", ["caffe", "torch", None])
def test_network_affine_is_the_field_inverse_composed_with_the_model(mode):
    # Independent path, float64: field input -> RGB [0, 255] -> the model's preprocessing written out by hand.
    f = np.random.RandomState(1).normal(size=(5, 3))
    rgb = (f * np.array([0.229, 0.224, 0.225]) + np.array([0.485, 0.456, 0.406])) * 255.0
    expected = {
        "caffe": rgb[:, ::-1] - np.array([103.939, 116.779, 123.68]),
        "torch": (rgb - np.array([123.675, 116.28, 103.53])) / np.array([58.395, 57.12, 57.375]),
        None: rgb,
    }[mode]
    order, scale, offset = profiles.network_affine(mode)
    np.testing.assert_allclose(f[:, list(order)] * scale + offset, expected, rtol=1e-12, atol=1e-9)
    # torchvision-style preprocessing *is* the field's normalisation: nothing to convert.
    assert profiles.is_identity((order, scale, offset)) == (mode == "torch")
    assert profiles.network_affine("some_future_mode") is None


def test_boxmot_sidecar(tmp_path):
    path = profiles.write_boxmot_metadata(tmp_path / "m.onnx", (256, 128))
    assert path == str(tmp_path / "m.onnx.metadata.json")  # boxmot artifact_metadata_path: suffix + ".metadata.json"
    meta = json.load(open(path))
    assert meta["model_name"] == "mmga" and meta["model_kwargs"] == {"img_size": [256, 128]}
    assert meta["schema_version"] == meta["model_kwargs_schema_version"] == 1 and meta["preprocess"] == "resize"


# ------------------------------------------------------------ ONNX, BoxMOT profile
@pytest.mark.slow
def test_boxmot_onnx_passes_boxmots_checks(boxmot_export):
    s = ort.InferenceSession(boxmot_export["onnx_path"], providers=["CPUExecutionProvider"])
    (inp,), (out,) = s.get_inputs(), s.get_outputs()
    # boxmot ONNXBackend.load_model: rank 4 NCHW, 3 channels on axis 1, H x W taken from the graph when fixed.
    assert len(inp.shape) == 4 and inp.shape[1:] == [3, 64, 32] and not isinstance(inp.shape[0], int)
    assert (inp.name, inp.type, out.name, out.shape[1]) == ("images", "tensor(float)", "output0", FEATURE_DIM)
    assert os.path.isfile(boxmot_export["onnx_path"] + ".metadata.json")
    card = boxmot_export["card"]
    assert card["profile"] == "boxmot" and card["input"]["layout"] == "NCHW" and card["input"]["range"] == [0.0, 1.0]
    assert card["output"]["name"] == "output0" and "caffe" in card["input"]["converted_in_graph_to"]


@pytest.mark.slow
def test_boxmot_onnx_features_equal_keras_on_boxmots_input(caffe_model, boxmot_export):
    x = _images(5, seed=3)
    s = ort.InferenceSession(boxmot_export["onnx_path"], providers=["CPUExecutionProvider"])
    got = s.run(None, {"images": _boxmot_feed(x)})[0]
    expected = _keras(caffe_model, x)
    assert np.max(np.abs(got - expected)) <= 1e-4
    # Fed the default profile's [0, 255] pixels instead, features are wrong: the contract matters.
    wrong = s.run(None, {"images": np.ascontiguousarray(x.transpose(0, 3, 1, 2))})[0]
    assert np.max(np.abs(wrong - expected)) > 1e-2
    # The package's own extractor reads the profile from the card and feeds it right.
    np.testing.assert_allclose(OnnxFeatureExtractor(boxmot_export["onnx_path"])(x), expected, atol=1e-4)


@pytest.mark.slow
def test_field_export_of_a_torch_preprocessing_model_adds_nothing(tmp_path):
    model = _model("torch")
    info = export_onnx(model, tmp_path / "t.onnx", profile="field")
    assert info["max_abs_diff"] <= 1e-4
    proto = onnx.load(info["onnx_path"])
    # Nothing but layout changes between `images` and the first convolution: no Sub / Div / Mul / Add.
    consumers, ops, frontier = {}, [], ["images"]
    for node in proto.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    while frontier:
        for node in consumers.get(frontier.pop(), []):
            if node.op_type != "Conv":
                ops.append(node.op_type)
                frontier.extend(node.output)
    assert set(ops) <= {"Transpose", "Identity"}, ops


# ------------------------------------------------------------ LiteRT
@pytest.mark.slow
def test_tflite_float32_parity_through_litert(caffe_model, float32_tflite):
    info = float32_tflite
    it = interpreter(info["tflite_path"])
    detail = it.get_input_details()[0]
    assert list(detail["shape_signature"]) == [-1, 64, 32, 3] and detail["dtype"] == np.float32  # NHWC
    x = _images(3, seed=5)
    assert np.max(np.abs(run_tflite(it, x) - _keras(caffe_model, x))) <= 1e-4
    card = json.load(open(info["card_path"]))
    assert card["runtime"] == "tflite" and card["tflite"]["precision"] == "float32"
    assert card["parity"]["max_abs_diff_vs_keras_float32"] <= 1e-4 and card["input"]["layout"] == "NHWC"


@pytest.mark.slow
def test_tflite_boxmot_profile_takes_normalised_nchw(caffe_model, boxmot_tflite_cli):
    code, folder, _ = boxmot_tflite_cli
    assert code == 0
    path = folder / "mmga_market_boxmot.tflite"
    assert json.load(open(f"{path}.metadata.json"))["model_kwargs"]["img_size"] == [64, 32]
    card = json.load(open(folder / "mmga_market_boxmot.json"))
    it = interpreter(path)
    # boxmot 25.0.0 TFLiteBackend feeds its NCHW crops unchanged when axis 1 is 3 (for an NHWC graph it
    # transposes twice: base_backend.inference_preprocess and TFLiteBackend.forward).
    shape = it.get_input_details()[0]["shape"]
    assert list(shape[1:]) == [3, 64, 32] and card["input"]["layout"] == "NCHW" and card["profile"] == "boxmot"
    assert card["parity"]["max_abs_diff_vs_keras_float32"] <= 1e-4
    x = _images(2, seed=6)
    assert np.max(np.abs(run_tflite(it, _boxmot_feed(x)) - _keras(caffe_model, x))) <= 1e-4
    # Fed raw [0, 255] pixels instead, features are wrong: the check above sees the normalisation.
    assert np.max(np.abs(run_tflite(it, np.ascontiguousarray(x.transpose(0, 3, 1, 2))) - _keras(caffe_model, x))) > 1e-2


@pytest.mark.slow
def test_tflite_float16(caffe_model, float32_tflite, tmp_path):
    fp16 = export_tflite(caffe_model, tmp_path / "h.tflite", precision="float16")
    assert fp16["max_abs_diff"] <= 1e-2 and fp16["card"]["tflite"]["bytes"] < 0.6 * os.path.getsize(
        float32_tflite["tflite_path"]
    )
    assert fp16["card"]["precision"] == "float16 weights (float32 compute on CPU)"


@pytest.mark.slow
def test_tflite_int8_keeps_attention_float_and_passes_xnnpacks_rule(tmp_path):
    # A "dead" channel-attention squeeze (ReLU output ~0, as trained units can be): int8 throughout,
    # its requantisation scale is far above XNNPACK's 256 and LiteRT's default delegate refuses the graph.
    from keras_mmga.export.tflite_export import XNNPackError, _tensor_table
    from keras_mmga.layers.channel_attention import ChannelAttention

    keras.utils.set_random_seed(0)
    model = MMGA(7, variant="wmga", input_shape=SHAPE, backbone_weights=None)
    unit = next(layer for layer in model._flatten_layers() if isinstance(layer, ChannelAttention))
    kernel, bias = unit.squeeze.get_weights()
    unit.squeeze.set_weights([kernel, np.full_like(bias, -1e3)])
    calibration = list(np.random.RandomState(8).randint(0, 256, (16,) + SHAPE).astype(np.uint8))
    with pytest.raises(XNNPackError, match=r"requantisation scale outside XNNPACK's .*FULLY_CONNECTED .*squeeze"):
        export_tflite(model, tmp_path / "all.tflite", precision="int8", calibration=calibration, keep_float=False)
    assert not os.path.exists(tmp_path / "all.tflite")

    int8 = export_tflite(model, tmp_path / "q.tflite", precision="int8", calibration=calibration, min_cosine=0.9)
    it = interpreter(int8["tflite_path"])  # with XNNPACK: it prepares
    x = _images(4, seed=7)
    got, expected = run_tflite(it, x), _keras(model, x)
    cosine = np.sum(got * expected, 1) / np.linalg.norm(got, axis=1) / np.linalg.norm(expected, axis=1)
    assert cosine.min() > 0.95 and int8["cosine"]["mean"] >= 0.95
    ops, tensors = _tensor_table(open(int8["tflite_path"], "rb").read())
    dtype = lambda op: tensors[op["inputs"][0]]["dtype"]
    backbone = [op for op in ops if op["op_name"] == "CONV_2D" and "/module" not in tensors[op["outputs"][0]]["name"]]
    attention = [op for op in ops if "/module" in tensors[op["outputs"][0]]["name"] and op["op_name"] != "DEQUANTIZE"]
    assert backbone and all(dtype(op) == np.int8 for op in backbone)  # the ResNet is quantised
    assert attention and all(dtype(op) == np.float32 for op in attention)  # the attention units are not
    assert it.get_input_details()[0]["dtype"] == it.get_output_details()[0]["dtype"] == np.float32
    assert int8["card"]["precision"].startswith("int8 weights and activations")
    assert int8["card"]["tflite"]["float32_kept"] == "attention units and embedding heads"
    with pytest.raises(ValueError, match="needs calibration"):
        export_tflite(model, tmp_path / "q2.tflite", precision="int8")


# ------------------------------------------------------------ Triton
def _dims(value):
    return [d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim]


@pytest.mark.slow
def test_triton_repository_parsed_by_tritons_schema(triton_repository):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    info = triton_repository
    repo = os.path.dirname(os.path.dirname(info["config_path"]))
    assert info["config_path"] == os.path.join(repo, "mmga_market", "config.pbtxt")
    assert info["onnx_path"] == os.path.join(repo, "mmga_market", "1", "model.onnx")
    config = text_format.Parse(open(info["config_path"]).read(), model_config_pb2.ModelConfig())
    assert (config.name, config.platform, config.max_batch_size) == ("mmga_market", "onnxruntime_onnx", 16)
    assert config.dynamic_batching.max_queue_delay_microseconds == 250
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 8, 16]
    graph = onnx.load(info["onnx_path"]).graph
    for entries, values in ((config.input, graph.input), (config.output, graph.output)):
        assert [e.name for e in entries] == [v.name for v in values]
        for e, v in zip(entries, values):
            assert e.data_type == model_config_pb2.TYPE_FP32 and v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
            assert _dims(v)[0] == -1 and list(e.dims) == _dims(v)[1:]  # the batch axis is Triton's
    assert [list(e.dims) for e in config.input] == [[3, 64, 32]] and [list(e.dims) for e in config.output] == [[1024]]
    assert [e.name for e in config.output] == ["output0"]


def test_triton_config_refuses_bad_arguments():
    proto = onnx.ModelProto()
    with pytest.raises(ValueError, match="model name"):
        triton_config(proto, "my model")
    with pytest.raises(ValueError, match="max_batch_size"):
        triton_config(proto, "m", max_batch_size=0)
    with pytest.raises(ValueError, match="queue_delay_us"):
        triton_config(proto, "m", queue_delay_us=-1)


# ------------------------------------------------------------ CLI
@pytest.mark.parametrize(
    "argv, message",
    [
        (["--format", "tflite", "--nchw"], "--nchw do not apply to --format tflite"),
        (["--format", "tflite", "--output", "x.onnx"], "must end with .tflite"),
        (["--format", "tflite", "--profile", "boxmot", "--nchw"], "--nchw do not apply"),
        (["--triton-repository", "r", "--output", "x.onnx"], "excludes --int8 and --output"),
        (["--int8", "--calibration", "c", "--profile", "boxmot"], "--int8 ONNX exports take the default profile"),
    ],
)
def test_cli_refuses_flag_mixes_before_converting(tmp_path, capsys, argv, message):
    model = tmp_path / "m.keras"
    model.write_bytes(b"not read: the flags fail first")
    assert cli_main(["export", "--model", str(model)] + argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_cli_tflite_boxmot(boxmot_tflite_cli):
    code, folder, printed = boxmot_tflite_cli  # the CLI run with its default output names (exported/)
    assert code == 0
    assert os.path.isfile(folder / "mmga_market_boxmot.tflite")
    assert os.path.isfile(folder / "mmga_market_boxmot.tflite.metadata.json")
    assert "max |LiteRT - Keras| = " in printed and "BoxMOT's sidecar" in printed
