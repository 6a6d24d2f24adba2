"""Checkpoints written by earlier code keep loading.

tests/fixtures/pre_split_mmga.keras was saved by MMGA before the backbone/task
split (see tests/fixtures/make_pre_split_checkpoint.py); its features, maps,
weight paths and config keys were recorded by that code.
"""

import os
import re

import keras
import numpy as np

from keras_mmga import MMGA

from fixtures.make_pre_split_checkpoint import pattern

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


def test_pre_split_checkpoint_loads_with_its_outputs_and_optimizer_state():
    with np.load(os.path.join(FIXTURES, "pre_split_mmga.npz")) as z:
        saved = {k: z[k] for k in z.files}
    model = keras.models.load_model(os.path.join(FIXTURES, "pre_split_mmga.keras"))
    assert isinstance(model, MMGA) and model.variant == "mmga"
    # The split replaced part_dim (per part) by local_dim (all parts) and added parts.
    old_keys = set(saved["config_keys"])
    assert set(model.get_config()) == (old_keys - {"part_dim"}) | {"local_dim", "parts", "backbone", "backbone_weights_info"}
    import json
    import zipfile

    with zipfile.ZipFile(os.path.join(FIXTURES, "pre_split_mmga.keras")) as archive:
        old_part_dim = json.loads(archive.read("config.json"))["config"]["part_dim"]
    assert model.parts == ("upper", "bottom") and model.part_dims == [old_part_dim, old_part_dim]
    # The same variables in the same order; only the scope of the backbone's
    # attention units and heads moved from "mmga/" to "mmga_backbone/".
    # (Keras numbers the backbone's scope when other backbones were built earlier in the process.)
    moved = [re.sub(r"^mmga_backbone(_\d+)?/", "mmga/", v.path) for v in model.weights]
    assert moved == list(saved["weight_paths"])
    assert len(model.trainable_variables) == int(saved["trainable"])
    # Every variable holds exactly the value the old code gave it (the fixture's
    # pattern; BatchNorm statistics were computed from images, so not checked here).
    for i, (v, old_path) in enumerate(zip(model.weights, saved["weight_paths"])):
        if not old_path.endswith(("moving_mean", "moving_variance")):
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(v), pattern(i, v.shape, old_path).astype(v.dtype))
    # The patterned weights make the network ill-conditioned: CPUs with other
    # vector units differ by ~1e-3 from the values recorded; a misplaced
    # variable changes them by orders of magnitude more.
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(saved["images"])), saved["features"], atol=5e-3)
    for name, value in model.attention_maps(saved["images"]).items():
        np.testing.assert_allclose(keras.ops.convert_to_numpy(value), saved[f"map_{name}"], atol=2e-3)
    assert int(model.optimizer.iterations) == 3
    assert model.optimizer.lr_scale(model.backbone_variables()[0]) == 0.5


def test_pre_split_checkpoint_saves_again_in_the_split_layout(tmp_path):
    with np.load(os.path.join(FIXTURES, "pre_split_mmga.npz")) as z:
        images, features = z["images"], z["features"]
    model = keras.models.load_model(os.path.join(FIXTURES, "pre_split_mmga.keras"))
    path = str(tmp_path / "resaved.keras")
    model.save(path)
    import zipfile

    import h5py

    with zipfile.ZipFile(path) as archive, archive.open("model.weights.h5") as raw:
        with h5py.File(raw, "r") as h5:
            assert "backbone" in h5 and "heads" not in h5
    again = keras.models.load_model(path)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(again(images)), features, atol=5e-3)
    assert int(again.optimizer.iterations) == 3


def test_pre_split_weights_file_loads_into_a_new_model(tmp_path):
    """`load_weights` on weights saved by old code (here: the weights inside the old archive)."""
    import zipfile

    with np.load(os.path.join(FIXTURES, "pre_split_mmga.npz")) as z:
        images, features = z["images"], z["features"]
    reference = keras.models.load_model(os.path.join(FIXTURES, "pre_split_mmga.keras"))
    weights = tmp_path / "old.weights.h5"
    with zipfile.ZipFile(os.path.join(FIXTURES, "pre_split_mmga.keras")) as archive:
        weights.write_bytes(archive.read("model.weights.h5"))
    fresh = MMGA.from_config(reference.get_config())
    fresh.compile(steps_per_epoch=10)
    fresh.optimizer.build(fresh.trainable_variables)
    fresh.load_weights(str(weights))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(fresh(images)), features, atol=5e-3)
    assert int(fresh.optimizer.iterations) == 3
