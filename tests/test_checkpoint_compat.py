"""Checkpoints written by earlier code keep loading.

tests/fixtures/pre_split_mmga.keras was saved by MMGA before the backbone/task
split (see tests/fixtures/make_pre_split_checkpoint.py); its features, maps,
weight paths and config keys were recorded by that code.
"""

import os

import keras
import numpy as np

from keras_mmga import MMGA

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


def test_pre_split_checkpoint_loads_with_its_outputs_and_optimizer_state():
    with np.load(os.path.join(FIXTURES, "pre_split_mmga.npz")) as z:
        saved = {k: z[k] for k in z.files}
    model = keras.models.load_model(os.path.join(FIXTURES, "pre_split_mmga.keras"))
    assert isinstance(model, MMGA) and model.variant == "mmga"
    assert sorted(model.get_config()) == list(saved["config_keys"])
    assert [v.path for v in model.weights] == list(saved["weight_paths"])
    assert len(model.trainable_variables) == int(saved["trainable"])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(saved["images"])), saved["features"], atol=1e-5)
    for name, value in model.attention_maps(saved["images"]).items():
        np.testing.assert_allclose(keras.ops.convert_to_numpy(value), saved[f"map_{name}"], atol=1e-5)
    assert int(model.optimizer.iterations) == 3
    assert model.optimizer.lr_scale(model.backbone_variables()[0]) == 0.5
