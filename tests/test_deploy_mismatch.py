"""No silent mismatch in the deploy API: another model's extractor, a foreign ONNX file."""

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from keras_mmga.deploy import GalleryIndex, OnnxFeatureExtractor

SIZE = (64, 32)


def _reduce_model(path, op="ReduceMean", out_shape=("N", 3)):
    h, w = SIZE
    keep = 0 if len(out_shape) == 2 else 1
    nodes = [helper.make_node(op, ["images"], ["features"], axes=[1, 2], keepdims=keep)]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", h, w, 3])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, list(out_shape))],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return str(path)


def _gallery(folder):
    folder.mkdir()
    for i, colour in enumerate([(10, 200, 30), (200, 10, 30), (30, 30, 200)]):
        cv2.imwrite(str(folder / f"000{i + 1}_c{i + 1}s1_000100_01.png"), np.full((128, 64, 3), colour, np.uint8))
    return folder


def test_query_with_another_models_extractor_names_both(tmp_path):
    with pytest.warns(UserWarning, match="no model card"):
        mean = OnnxFeatureExtractor(_reduce_model(tmp_path / "mean.onnx"))
        other = OnnxFeatureExtractor(_reduce_model(tmp_path / "max.onnx", "ReduceMax"))
    gallery = _gallery(tmp_path / "gallery")
    GalleryIndex.build(mean, gallery).save(tmp_path / "g")
    index = GalleryIndex.load(tmp_path / "g")
    image = str(gallery / "0001_c1s1_000100_01.png")
    assert index.query(image, topk=1, extractor=mean)[0]["path"].endswith("0001_c1s1_000100_01.png")
    with pytest.raises(ValueError, match=r"max\.onnx.*not the model that built this index.*mean\.onnx"):
        index.query(image, topk=1, extractor=other)
    feature = other(image)[0]  # a ready feature cannot be checked and is taken as it is
    assert len(index.query(feature, topk=1)) == 1


def test_foreign_onnx_is_refused_or_flagged(tmp_path):
    with pytest.raises(ValueError, match=r"not a keras-mmga export: output 'features' must be \(N, D\)"):
        OnnxFeatureExtractor(_reduce_model(tmp_path / "r3.onnx", out_shape=("N", 1, 3)))
    with pytest.warns(UserWarning, match=r"cannot check that it is a keras-mmga export"):
        OnnxFeatureExtractor(_reduce_model(tmp_path / "plain.onnx"))


def test_unit_range_images_warn_once_naming_0_255():
    import warnings

    import keras

    from keras_mmga.models import MMGA

    keras.utils.set_random_seed(0)
    model = MMGA(4, variant="baseline", input_shape=SIZE + (3,), backbone_weights=None)
    pixels = np.random.default_rng(0).uniform(0, 255, (2,) + SIZE + (3,)).astype("float32")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # [0, 255] pixels, a black image: no warning
        model.predict(pixels, verbose=0)
        model(np.zeros((1,) + SIZE + (3,), "float32"))
    with pytest.warns(UserWarning, match=r"values in \[0, 1\].*RGB pixels in \[0, 255\]") as seen:
        model(pixels / 255.0)
    assert len([w for w in seen if "[0, 255]" in str(w.message)]) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per model
        model(pixels / 255.0)
        model.predict(pixels / 255.0, verbose=0)
    other = MMGA(4, variant="baseline", input_shape=SIZE + (3,), backbone_weights=None)
    with pytest.warns(UserWarning, match=r"predict: x holds values in \[0, 1\]"):
        other.predict(pixels / 255.0, verbose=0)
