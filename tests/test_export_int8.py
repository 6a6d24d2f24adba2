"""int8 export: one input / one output, batches 1 and 5, accuracy against Keras, the card, the threshold, the CLI.

Expectations are independent of the exporter: features of the Keras model
(cosine), images read and resized with OpenCV here, rank-1 / mAP from the
evaluation API on the Keras model's flip-averaged features.
"""

import json

import cv2
import keras
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto

from keras_mmga import MMGA
from keras_mmga.data import synthetic
from keras_mmga.export import onnx_export as export_lib  # where export_onnx looks up `convert` (patched below)
from keras_mmga.export.int8 import DEFAULT_CALIBRATION_COUNT, DEFAULT_MIN_COSINE, export_int8

pytestmark = pytest.mark.slow  # every test reads the int8 export (a calibrated quantisation)

SIZE = (64, 32)


def _write_people(folder, n, seed):
    folder.mkdir(parents=True)
    rng = np.random.RandomState(seed)
    for i in range(n):
        bgr, _ = synthetic.draw_person(rng, synthetic.make_identity(rng), synthetic.make_camera(rng))
        cv2.imwrite(str(folder / f"{i:04d}_c1s1_{i:06d}_00.png"), bgr)
    return folder


def _rgb(paths):
    """Independent of the package: OpenCV read, bilinear resize, BGR -> RGB float32."""
    return np.stack(
        [
            cv2.resize(cv2.imread(str(p)), SIZE[::-1], interpolation=cv2.INTER_LINEAR)[..., ::-1].astype(np.float32)
            for p in paths
        ]
    )


def _cosine(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _keras(model, x):
    return np.asarray(keras.ops.convert_to_numpy(model(x, training=False)))


@pytest.fixture(scope="module")
def int8(tmp_path_factory):
    out = tmp_path_factory.mktemp("int8")
    keras.utils.set_random_seed(2)
    model = MMGA(5, variant="mmga", input_shape=SIZE + (3,), backbone_weights=None)
    model.save(out / "m.keras")
    calibration = _write_people(out / "calibration" / "sub", 12, seed=0).parent  # found recursively
    images_root, _ = synthetic.write_dataset(
        out / "data", num_train_ids=1, num_test_ids=3, seed=1, images_per_camera=(1, 2), num_distractors=2, num_junk=0
    )
    info = export_int8(model, out / "m_int8.onnx", calibration, dataset=images_root, float_path=out / "m.onnx")
    return model, info, out, calibration, images_root


def test_one_input_one_output_batches_1_and_5_close_to_keras(int8):
    model, info, _, _, _ = int8
    session = ort.InferenceSession(info["onnx_path"], providers=["CPUExecutionProvider"])
    (inp,), (outp,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, inp.type, inp.shape[1:]) == ("images", "tensor(float)", [64, 32, 3])
    assert (outp.name, outp.type, outp.shape[1:]) == ("features", "tensor(float)", [2048])
    people = np.random.RandomState(5)
    x = np.stack(
        [
            cv2.resize(
                synthetic.draw_person(people, synthetic.make_identity(people), synthetic.make_camera(people))[0],
                SIZE[::-1],
            )[..., ::-1]
            for _ in range(5)
        ]
    ).astype(np.float32)  # people the calibration did not see
    for batch in (x[:1], x):
        got = session.run(["features"], {"images": batch})[0]
        assert got.shape == (len(batch), 2048) and got.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)  # the norm stayed float32
        assert _cosine(got, _keras(model, batch)).min() >= 0.99


def test_graph_is_quantised_with_per_channel_weights_and_a_float_norm(int8):
    _, info, _, _, _ = int8
    graph = onnx.load(info["onnx_path"]).graph
    ops = [n.op_type for n in graph.node]
    assert ops.count("QuantizeLinear") > 50 and ops.count("DequantizeLinear") > 100
    inits = {i.name: i for i in graph.initializer}
    int8_weights = [i for i in graph.initializer if i.data_type == TensorProto.INT8 and len(i.dims) == 4]
    assert len(int8_weights) >= 53  # every ResNet50 convolution at least
    per_channel = [
        n
        for n in graph.node
        if n.op_type == "DequantizeLinear"
        and n.input[0] in inits
        and inits[n.input[0]].data_type == TensorProto.INT8
        and len(inits[n.input[1]].dims) == 1
        and inits[n.input[1]].dims[0] > 1
    ]
    assert len(per_channel) >= len(int8_weights)
    kept = info["card"]["int8"]["kept_float32"]
    producer = {o: n for n in graph.node for o in n.output}
    assert all(n in {m.name for m in graph.node} for n in kept)
    # The tail: the walk back from `features` over the normalisation's ops (the attention units and
    # heads kept float by default come before it).
    tail, front = [], [producer["features"]]
    while front:
        node = front.pop()
        if node.op_type in ("Mul", "ReduceSum", "ReduceSumSquare", "Max", "Sqrt", "Div", "Reciprocal") and (
            node not in tail
        ):
            tail.append(node)
            front += [producer[i] for i in node.input if i in producer]
    assert {n.op_type for n in tail} >= {"Sqrt", "Div"} and all(n.name in kept for n in tail)
    consumers = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n.op_type)
    for node in tail:  # the normalisation computes in float32: none of its results is quantised again
        assert all("QuantizeLinear" not in consumers.get(o, []) for o in node.output), node.name
    assert graph.output[0].name == "features" and producer["features"].name in kept


def _check_tensorrt_qdq(graph):
    """Every Q/DQ against TensorRT's rules for explicit quantisation (TensorRT developer guide,
    "Working with Quantized Types"; onnx-tensorrt's operator matrix): int8 with zero point 0
    (symmetric), scale > 0, one scalar scale for activations, weights per output channel (axis 0
    of a Conv kernel OIHW, axis 1 of a MatMul (K, N) matrix), no int32 bias Q/DQ."""
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
    consumers = {}
    for n in graph.node:
        for k, i in enumerate(n.input):
            consumers.setdefault(i, []).append((n, k))
    checked = {"QuantizeLinear": 0, "DequantizeLinear": 0, "weights": 0}
    for n in graph.node:
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        checked[n.op_type] += 1
        assert len(n.input) == 3, f"{n.name}: no zero point (an implicit uint8 zero point)"
        scale, zero = inits[n.input[1]], inits[n.input[2]]
        assert zero.dtype == np.int8 and not zero.any(), f"{n.name}: zero point {zero.dtype} {zero.ravel()[:4]}"
        assert np.all(scale > 0) and np.all(np.isfinite(scale)) and scale.dtype == np.float32, n.name
        axis = {a.name: a.i for a in n.attribute}.get("axis", 1)
        if n.op_type == "DequantizeLinear" and n.input[0] in inits:
            weight = inits[n.input[0]]
            assert weight.dtype == np.int8, f"{n.name}: {weight.dtype} weights (an int32 bias?)"
            users = consumers[n.output[0]]
            assert len(users) >= 1
            for user, k in users:
                assert k == 1 and user.op_type in ("Conv", "MatMul", "Gemm"), (n.name, user.op_type)
                want = 0 if user.op_type == "Conv" else 1
                if scale.size > 1:
                    assert axis == want and scale.shape == (weight.shape[want],), (n.name, axis, scale.shape)
            checked["weights"] += 1
        else:
            assert scale.size == 1 and zero.size == 1, f"{n.name}: activation scale is not scalar"
    return checked


def test_tensorrt_target_follows_tensorrt_qdq_rules(int8, tmp_path):
    from keras_mmga.export.int8 import load_images, quantize

    model, info, out, calibration, _ = int8
    paths = sorted(str(p) for p in calibration.rglob("*.png"))
    images = load_images(paths, SIZE)
    kept = quantize(out / "m.onnx", tmp_path / "trt.onnx", images, target="tensorrt")
    checked = _check_tensorrt_qdq(onnx.load(tmp_path / "trt.onnx").graph)
    assert checked["QuantizeLinear"] > 50 and checked["weights"] >= 53, checked
    assert any("/module" in k for k in kept)  # the attention units stay float by default
    session = ort.InferenceSession(str(tmp_path / "trt.onnx"), providers=["CPUExecutionProvider"])
    assert _cosine(session.run(["features"], {"images": images})[0], _keras(model, images)).min() >= 0.99


def test_default_onnxruntime_target_breaks_the_tensorrt_rules(int8):
    # The check has teeth: ONNX Runtime's uint8 activations (zero points != 0) fail it.
    _, info, _, _, _ = int8
    assert info["card"]["int8"]["target"] == "onnxruntime"
    with pytest.raises(AssertionError, match="zero point"):
        _check_tensorrt_qdq(onnx.load(info["onnx_path"]).graph)


def test_card_records_the_cosine_and_rank_figures(int8):
    model, info, out, calibration, images_root = int8
    card = json.loads(open(info["card_path"]).read())
    assert card["int8"]["min_cosine"] == DEFAULT_MIN_COSINE and card["precision"].startswith("int8")
    cosine = card["int8"]["cosine_vs_float32"]
    paths = sorted(str(p) for p in calibration.rglob("*.png"))
    assert cosine["images"] == len(paths) == 12 and card["int8"]["calibration"]["images"] == 12
    int8_session = ort.InferenceSession(info["onnx_path"], providers=["CPUExecutionProvider"])
    x = _rgb(paths)
    expected = _cosine(int8_session.run(["features"], {"images": x})[0], _keras(model, x))
    assert cosine["mean"] == pytest.approx(expected.mean(), abs=1e-3) and cosine["mean"] >= 0.99
    assert cosine["min"] == pytest.approx(expected.min(), abs=2e-3)
    # rank-1 / mAP of the float32 export = those of the Keras model, flip-averaged (the evaluation protocol).
    from keras_mmga.data.market import load_dataset
    from keras_mmga.evaluation import feature_metrics

    data = load_dataset(images_root, verbose=False)

    def keras_features(samples):
        x = _rgb([s[0] for s in samples])
        f = _keras(model, x) + _keras(model, x[:, :, ::-1])
        return f / np.linalg.norm(f, axis=1, keepdims=True)

    q, g = data.query, data.gallery
    result = feature_metrics(
        keras_features(q), keras_features(g), [s[1] for s in q], [s[1] for s in g], [s[2] for s in q], [s[2] for s in g]
    )
    ranks = card["int8"]["rank_accuracy"]
    assert ranks["float32"]["rank1"] == pytest.approx(100 * result["cmc"][0], abs=1e-6)
    assert ranks["float32"]["mAP"] == pytest.approx(100 * result["mAP"], abs=0.5)
    assert 0 <= ranks["int8"]["rank1"] <= 100 and 0 <= ranks["int8"]["mAP"] <= 100


def test_cli_int8_threshold_failure_and_bad_input(int8, tmp_path, monkeypatch, capsys):
    from keras_mmga.cli import export as export_cli
    from keras_mmga.cli import main

    _, info, out, calibration, _ = int8
    assert (export_cli.DEFAULT_CALIBRATION_COUNT, export_cli.DEFAULT_MIN_COSINE) == (
        DEFAULT_CALIBRATION_COUNT,
        DEFAULT_MIN_COSINE,
    )
    from keras_mmga.export import int8 as int8_lib

    for name in (
        "INT8_TARGETS",
        "DEFAULT_INT8_TARGET",
        "CALIBRATION_METHODS",
        "DEFAULT_CALIBRATION_METHOD",
        "KEEP_FLOAT",
        "DEFAULT_KEEP_FLOAT",
    ):
        assert getattr(export_cli, name) == getattr(int8_lib, name), name
    assert (export_cli.DEFAULT_OPSET, export_cli.MIN_OPSET, export_cli.MAX_OPSET) == (
        export_lib.DEFAULT_OPSET,
        export_lib.MIN_OPSET,
        export_lib.MAX_OPSET,
    )
    keras_file, target = str(out / "m.keras"), tmp_path / "cli_int8.onnx"
    base = ["export", "--model", keras_file, "--output", str(target), "--int8"]
    # The conversion is tested above; reuse its float32 graph to keep this fast.
    monkeypatch.setattr(export_lib, "convert", lambda fn, opset: onnx.load(out / "m.onnx"))
    # Threshold failure path: a mean cosine of 1.0 cannot be reached by int8; the file is removed.
    assert main(base + ["--calibration", str(calibration), "--calibration-count", "4", "--min-cosine", "1.0"]) == 1
    err = capsys.readouterr().err
    # Each step of seconds is announced, then the failure.
    assert err.splitlines()[:2] == [f"loading {keras_file} ...", "converting to ONNX (opset 17; tens of seconds) ..."]
    assert "quantising to int8, calibrated on 4 images ..." in err
    err = err.splitlines()[-1]
    assert err.startswith("export failed: int8 features are too far from float32: mean cosine 0.9")
    assert "(--min-cosine / min_cosine)" in err and "Lower --min-cosine to at most 0.9" in err
    assert "below the threshold 1" in err and not target.exists()
    monkeypatch.setattr(export_lib, "convert", lambda fn, opset: pytest.fail("converted despite bad input"))
    (tmp_path / "empty").mkdir()
    for argv, message in [
        (base, "--int8 needs --calibration"),
        (base + ["--calibration", str(tmp_path / "absent")], "Calibration folder not found"),
        (base + ["--calibration", str(tmp_path / "empty")], "has no images"),
        (base + ["--calibration", str(calibration), "--fp16"], "exclude each other"),
        (base + ["--calibration", str(calibration), "--min-cosine", "1.5"], "--min-cosine"),
        (base + ["--calibration", str(calibration), "--data", str(tmp_path / "absent")], "Dataset folder not found"),
        (base[:-1] + ["--calibration", str(calibration)], "only apply with --int8"),
        (base[:-1] + ["--keep-float", "tail"], "--keep-float only apply with --int8 --format onnx"),
        (
            base + ["--calibration", str(calibration), "--format", "tflite", "--int8-target", "tensorrt"],
            "--int8-target only apply with --int8 --format onnx",
        ),
        (base + ["--calibration", str(calibration), "--calibration-method", "entropy"], "invalid choice"),
    ]:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1, err
    assert not target.exists()
