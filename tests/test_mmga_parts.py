"""MMGA with any set of part branches: shapes, names, maps, masks, losses and export."""

import re

import keras
import numpy as np
import pytest
from factories import random_images

from keras_mmga import MMGA, MMGABackbone, losses

SHAPE = (64, 32, 3)  # maps 4 x 2


def _images(n, seed=0):
    return random_images(n, SHAPE, seed)


@pytest.fixture(scope="module")
def models():
    built = {}
    for parts in (("torso",), ("upper", "bottom"), ("head", "torso", "legs", "feet")):
        keras.utils.set_random_seed(0)
        built[len(parts)] = MMGA(6, variant="mmga", input_shape=SHAPE, backbone_weights=None, parts=parts)
    return built


@pytest.mark.parametrize("k", [1, 2, 4])
def test_shapes_names_and_maps_for_k_parts(models, k):
    model = models[k]
    x = _images(3)
    assert len(model.parts) == k and model.mask_channels == 1 + k
    # local_dim 1024 split equally: the feature stays 2048-d.
    assert model.part_dims == [1024 // k] * k and model.feature_dim == 2048
    assert model(x).shape == (3, 2048)
    out = model.compute_outputs(x, training=True)
    assert out["local_logits"].shape == (3, 6) and out["whole_logits"].shape == (3, 6)
    names = ["module1_whole", "module2_whole"] + [f"module2_{p}" for p in model.parts]
    assert list(out["attention_maps"]) == names
    for m in model.attention_maps(x).values():
        m = keras.ops.convert_to_numpy(m)
        assert m.shape == (3, 4, 2) and m.min() > 1.0 and m.max() < 2.0
    heads = [model.backbone.get_layer(f"{b}_head") for b in ("whole",) + model.parts]
    assert [h.units for h in heads] == [1024] + model.part_dims
    # The local classifier takes the concatenated part features.
    assert model.local_classifier.kernel.shape == (1024, 6)


def test_three_parts_split_1024_with_the_remainder_first():
    model = MMGA(4, variant="mmga", input_shape=SHAPE, backbone_weights=None, parts=("head", "torso", "bottom"))
    assert model.part_dims == [342, 341, 341] and model.feature_dim == 2048


def test_default_parts_are_the_papers_variables():
    """`parts` left out builds exactly the variables of the paper's two parts, upper and bottom."""

    def names_and_shapes(m):
        return [(re.sub(r"^mmga(_backbone)?(_\d+)?/", "mmga/", v.path), tuple(v.shape)) for v in m.weights]

    model = MMGA(5, variant="mmga", input_shape=(32, 16, 3), backbone_weights=None, whole_dim=16, local_dim=16)
    explicit = MMGA(
        5,
        variant="mmga",
        input_shape=(32, 16, 3),
        backbone_weights=None,
        whole_dim=16,
        local_dim=16,
        parts=("upper", "bottom"),
    )
    assert model.parts == ("upper", "bottom") and model.part_dims == [8, 8]
    assert names_and_shapes(model) == names_and_shapes(explicit)


def test_parts_round_trip_through_keras_file(models, tmp_path):
    model = models[4]
    path = str(tmp_path / "four.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.parts == model.parts and loaded.part_dims == model.part_dims
    x = _images(2, seed=1)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x)), keras.ops.convert_to_numpy(model(x)), atol=1e-5)


def test_masks_with_the_wrong_number_of_channels_are_a_clear_error(models):
    model = models[4]
    model.compile(learning_rate=0.01)
    x = _images(4)
    y = {"labels": np.array([0, 0, 1, 1]), "masks": np.zeros((4, 4, 2, 3), "float32")}
    with pytest.raises(ValueError, match=r"masks must have shape \(N, 4, 2, 5\).*whole/head/torso/legs/feet"):
        model.fit(x, y, epochs=1, steps_per_epoch=1, verbose=0)


def test_parts_are_refused_where_they_cannot_be_honoured():
    with pytest.raises(ValueError, match="only the whole branch"):
        MMGA(4, variant="wmga", input_shape=SHAPE, backbone_weights=None, parts=("head",))
    with pytest.raises(ValueError, match="fixed halves"):
        MMGA(4, variant="dmga", input_shape=SHAPE, backbone_weights=None, parts=("head", "legs"))
    with pytest.raises(ValueError, match="repeat"):
        MMGA(4, variant="mmga", input_shape=SHAPE, backbone_weights=None, parts=("legs", "legs"))
    with pytest.raises(ValueError, match="'whole' is mask channel 0"):
        MMGA(4, variant="mmga", input_shape=SHAPE, backbone_weights=None, parts=("whole",))
    with pytest.raises((TypeError, ValueError), match="part_dim"):
        MMGA(4, variant="mmga", input_shape=SHAPE, backbone_weights=None, part_dim=100, local_dim=1024)


def test_attention_loss_weights_every_part_by_lambda0_float64():
    """Eq. 5 for four parts against an independent NumPy RMSE in float64."""
    rng = np.random.RandomState(0)
    parts = ("head", "torso", "legs", "feet")
    masks = rng.rand(3, 4, 2, 5)
    names = ["module1_whole", "module2_whole"] + [f"module2_{p}" for p in parts]
    maps = {k: 1.0 + rng.rand(3, 4, 2) for k in names}
    shuffled = {k: maps[k] for k in reversed(names)}  # the order of the dict does not matter

    def rmse(mask, s):  # eq. 3-4: per-image min-max normalised map, RMSE over images
        low, high = s.min(axis=(1, 2), keepdims=True), s.max(axis=(1, 2), keepdims=True)
        return np.sqrt(np.mean(np.sum((mask - (s - low) / (high - low)) ** 2, axis=(1, 2))))

    expected = rmse(masks[..., 0], maps["module1_whole"]) + rmse(masks[..., 0], maps["module2_whole"])
    expected += 0.5 * sum(rmse(masks[..., 1 + i], maps[f"module2_{p}"]) for i, p in enumerate(parts))
    got = float(losses.attention_loss(masks, shuffled, parts=parts))
    np.testing.assert_allclose(got, expected, rtol=1e-9)  # epsilon 1e-12 in the denominator


@pytest.mark.slow
def test_a_four_part_model_trains_with_every_term(models):
    model = models[4]
    model.compile(learning_rate=0.01)
    rng = np.random.RandomState(2)
    x = _images(8, seed=2)
    y = {"labels": np.repeat(np.arange(4), 2), "masks": rng.rand(8, 4, 2, 5).astype("float32")}
    history = model.fit(x, y, batch_size=8, epochs=2, verbose=0).history
    for key in ("loss", "whole_softmax", "local_softmax", "triplet", "attention"):
        assert np.all(np.isfinite(history[key]))


def test_backbone_alone_gives_the_feature_and_maps():
    backbone = MMGABackbone(
        input_shape=SHAPE, backbone_weights=None, parts=("head", "legs"), local_dim=64, whole_dim=32
    )
    x = _images(2)
    assert backbone(x).shape == (2, 96)
    assert sorted(backbone.attention_maps(x)) == ["module1_whole", "module2_head", "module2_legs", "module2_whole"]
    again = MMGABackbone.from_config(backbone.get_config())
    assert again.parts == ("head", "legs") and again.feature_dim == 96


@pytest.mark.slow
def test_four_part_model_exports_with_parity_and_tensorrt_ops(models, tmp_path):
    import onnx

    from keras_mmga.export import export_onnx, tensorrt_ops

    info = export_onnx(models[4], tmp_path / "four.onnx")
    assert info["feature_dim"] == 2048 and info["max_abs_diff"] <= 1e-4
    proto = onnx.load(info["onnx_path"])
    assert {n.op_type for n in proto.graph.node} <= tensorrt_ops.SUPPORTED
    assert tensorrt_ops.check(proto) == []
