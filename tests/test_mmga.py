import keras
import numpy as np
import pytest
import tensorflow as tf
from factories import pk_targets, random_images

from keras_mmga import MMGA, VARIANTS

SMALL = (128, 64, 3)
FEATURE_DIM = {"baseline": 1024, "baseline_att": 1024, "wmga": 1024, "dmga": 2048, "mmga": 2048}
MAPS = {
    "baseline": set(),
    "baseline_att": {"module1_whole", "module2_whole"},
    "wmga": {"module1_whole", "module2_whole"},
    "dmga": {"module1_whole", "module2_whole", "module2_upper", "module2_bottom"},
    "mmga": {"module1_whole", "module2_whole", "module2_upper", "module2_bottom"},
}


def _images(n, shape=SMALL, seed=0):
    return random_images(n, shape, seed)


def _targets(n, num_ids, size=(8, 4), seed=1):
    return pk_targets(n, num_ids, size, seed=seed)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_output_shapes_and_dtypes_small(variant):
    model = MMGA(5, variant=variant, input_shape=SMALL, backbone_weights=None)
    x = _images(3)
    feats = keras.ops.convert_to_numpy(model(x))
    assert feats.shape == (3, FEATURE_DIM[variant]) == (3, model.feature_dim)
    assert feats.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, rtol=1e-5)

    out = model(x, training=True)
    assert tuple(out["whole_logits"].shape) == (3, 5)
    assert ("local_logits" in out) == (variant in ("dmga", "mmga"))
    if "local_logits" in out:
        assert tuple(out["local_logits"].shape) == (3, 5)
    assert set(out["attention_maps"]) == MAPS[variant]
    for m in out["attention_maps"].values():
        assert tuple(m.shape) == (3, 8, 4) and m.dtype == "float32"
    assert model.attention_size == (8, 4)


@pytest.mark.slow
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_inference_shapes_at_paper_size(variant):
    model = MMGA(751, variant=variant, input_shape=(384, 128, 3), backbone_weights=None)
    feats = model(_images(1, (384, 128, 3)))
    assert tuple(feats.shape) == (1, FEATURE_DIM[variant])
    maps = model.attention_maps(_images(1, (384, 128, 3)))
    assert all(tuple(m.shape) == (1, 24, 8) for m in maps.values())
    assert set(maps) == MAPS[variant]


def test_other_input_sizes_divisible_by_16():
    model = MMGA(3, variant="mmga", input_shape=(256, 96, 3), backbone_weights=None)
    assert tuple(model(_images(2, (256, 96, 3))).shape) == (2, 2048)
    assert model.attention_size == (16, 6)


def test_inference_ignores_classifier_and_is_deterministic():
    model = MMGA(4, variant="mmga", input_shape=SMALL, backbone_weights=None)
    x = _images(2)
    a = keras.ops.convert_to_numpy(model(x))
    b = keras.ops.convert_to_numpy(model.predict(x, verbose=0))
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_preprocessing_is_inside_the_graph():
    # Caffe preprocessing: a pixel equal to the BGR mean becomes zero.
    model = MMGA(2, variant="baseline", input_shape=SMALL, backbone_weights=None)
    rgb_mean = np.array([123.68, 116.779, 103.939], "float32")
    x = np.tile(rgb_mean, (1,) + SMALL[:2] + (1,))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model.backbone.preprocess(x)), 0.0, atol=1e-4)


@pytest.mark.slow
def test_fit_reduces_loss_and_logs_every_component():
    keras.utils.set_random_seed(0)
    model = MMGA(4, variant="mmga", input_shape=(64, 32, 3), backbone_weights=None)
    # λ2 = 1 rather than 0.1: at 0.1 six steps move the maps by less than the
    # step-to-step noise of the other terms, whatever the seed.
    model.compile(learning_rate=0.01, attention_weight=1.0)
    x, y = _images(8, (64, 32, 3)), _targets(8, 4, size=(4, 2))
    ds = tf.data.Dataset.from_tensors((x, y)).repeat()
    history = model.fit(ds, epochs=6, steps_per_epoch=1, verbose=0).history
    for key in ("loss", "whole_softmax", "local_softmax", "triplet", "attention", "accuracy"):
        assert key in history and len(history[key]) == 6 and np.all(np.isfinite(history[key]))
    assert history["loss"][-1] < history["loss"][0]
    assert history["attention"][-1] < history["attention"][0]
    # The logged total is eq. 9 of the logged parts.
    h = {k: v[-1] for k, v in history.items()}
    np.testing.assert_allclose(
        h["loss"], h["whole_softmax"] + h["local_softmax"] + 2.0 * h["triplet"] + 1.0 * h["attention"], rtol=1e-4
    )
    assert model.optimizer._learning_rate.steps_per_epoch == 1


@pytest.mark.slow
def test_unsupervised_variants_need_no_masks():
    model = MMGA(4, variant="baseline_att", input_shape=(64, 32, 3), backbone_weights=None)
    model.compile(learning_rate=0.01, steps_per_epoch=1)
    history = model.fit(_images(8, (64, 32, 3)), np.repeat(np.arange(4), 2), batch_size=8, epochs=1, verbose=0)
    assert "attention" not in history.history and "local_softmax" not in history.history


@pytest.mark.slow
def test_per_group_learning_rates_after_one_step():
    # float64: a random-init ResNet50 is so ill-conditioned that float32
    # rounding differences between the eager pass below and fit's compiled
    # step change gradients by ~1e-3; in float64 they agree to ~1e-7.
    keras.utils.set_random_seed(0)
    model = MMGA(4, variant="mmga", input_shape=(64, 32, 3), backbone_weights=None, dtype="float64")
    model.compile(momentum=0.9, weight_decay=5e-4, steps_per_epoch=1)
    x, y = _images(8, (64, 32, 3)), _targets(8, 4, size=(4, 2))
    watched = {
        "backbone": model.backbone.stage4.get_layer("conv5_block3_3_conv").kernel,
        "head": model.whole_classifier.kernel,
    }
    before = {k: v.numpy().copy() for k, v in watched.items()}
    # Gradient of the exact training loss at the starting weights (the BN
    # moving statistics this pass updates are not trained weights).
    with tf.GradientTape() as tape:
        outputs = model.compute_outputs(x, training=True)
        loss, _ = model.compute_losses(outputs, *model.unpack_batch((x, y))[1:])
    grads = tape.gradient(loss, [watched["backbone"], watched["head"]])
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    for (key, lr), g in zip((("backbone", 0.05), ("head", 0.1)), grads):
        expected = before[key] - lr * (g.numpy() + 5e-4 * before[key])
        assert not np.allclose(expected, before[key])
        np.testing.assert_allclose(watched[key].numpy(), expected, rtol=1e-6, atol=1e-9)


@pytest.mark.slow
def test_save_load_round_trip_with_optimizer_state(tmp_path):
    keras.utils.set_random_seed(0)
    model = MMGA(4, variant="dmga", input_shape=(64, 32, 3), backbone_weights=None)
    model.compile(learning_rate=0.01, triplet_weight=1.5, steps_per_epoch=1)
    x, y = _images(8, (64, 32, 3)), _targets(8, 4, size=(4, 2))
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, MMGA) and loaded.variant == "dmga"
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model(x)), keras.ops.convert_to_numpy(loaded(x)))
    assert loaded.loss_config["triplet_weight"] == 1.5
    assert int(loaded.optimizer.iterations) == 2
    for a, b in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    # Training continues from the restored momentum: one more step on each gives the same weights.
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    loaded.fit(x, y, batch_size=8, epochs=1, verbose=0)
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b), rtol=1e-5, atol=1e-6)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="Unknown variant"):
        MMGA(3, variant="nope", backbone_weights=None)
    model = MMGA(4, variant="mmga", input_shape=(64, 32, 3), backbone_weights=None)
    model.compile(steps_per_epoch=1)
    x = _images(8, (64, 32, 3))
    with pytest.raises(ValueError, match="needs 'masks'|need 'masks'"):
        model.fit(x, {"labels": np.zeros(8, "int32")}, batch_size=8, verbose=0)
    with pytest.raises(ValueError, match=r"\(N, 4, 2, 3\)"):
        model.fit(
            x, {"labels": np.zeros(8, "int32"), "masks": np.zeros((8, 8, 4, 3), "float32")}, batch_size=8, verbose=0
        )
    with pytest.raises(ValueError, match="own losses"):
        model.compile(loss="mse")


@pytest.mark.slow
def test_mixed_bfloat16_trains_with_float32_losses():
    keras.utils.set_random_seed(0)
    model = MMGA(4, variant="mmga", input_shape=(64, 32, 3), backbone_weights=None, dtype="mixed_bfloat16")
    assert model.backbone.stem.get_layer("conv1_conv").compute_dtype == "bfloat16"
    model.compile(learning_rate=0.01, steps_per_epoch=1)
    x, y = _images(8, (64, 32, 3)), _targets(8, 4, size=(4, 2))
    history = model.fit(x, y, batch_size=8, epochs=2, verbose=0).history
    assert all(np.all(np.isfinite(v)) for v in history.values())
    out = model(x, training=True)
    assert out["features"].dtype == "float32" and out["whole_logits"].dtype == "float32"
    assert all(m.dtype == "float32" for m in out["attention_maps"].values())
    # Weights stay float32 under mixed precision.
    assert all(v.dtype == "float32" for v in model.trainable_variables)


def test_optimizer_settings_next_to_a_custom_optimizer_are_an_error():
    from keras_mmga.optimizers import ParamGroupSGD

    model = MMGA(4, variant="dmga", input_shape=(64, 32, 3), backbone_weights=None)
    with pytest.raises(ValueError, match=r"\['learning_rate', 'momentum'\] with optimizer 'SGD'"):
        model.compile(optimizer=keras.optimizers.SGD(0.01), learning_rate=0.05, momentum=0.5)
    with pytest.raises(ValueError, match=r"\['backbone_lr_scale'\].*ParamGroupSGD still takes"):
        model.compile(optimizer=keras.optimizers.Adam(), backbone_lr_scale=0.1)
    with pytest.raises(ValueError, match=r"\['weight_decay', 'lr_decay_epochs', 'steps_per_epoch'\]"):
        model.compile(optimizer="adam", weight_decay=0.0, lr_decay_epochs=10, steps_per_epoch=3)
    with pytest.raises(ValueError, match=r"\['learning_rate'\] with optimizer 'ParamGroupSGD'"):
        model.compile(optimizer=ParamGroupSGD(0.01), learning_rate=0.02, backbone_lr_scale=0.1)
    # A ParamGroupSGD takes the backbone scale; the loss settings go with any optimizer.
    optimizer = ParamGroupSGD(0.01)
    model.compile(optimizer=optimizer, backbone_lr_scale=0.25, triplet_weight=1.5)
    assert optimizer.lr_scale(model.backbone.stage4.get_layer("conv5_block3_3_conv").kernel) == 0.25
    assert optimizer.lr_scale(model.whole_classifier.kernel) == 1.0
    # Restoring a compile config (as load_model does) with any optimizer is not refused.
    for compiled_with in (optimizer, keras.optimizers.SGD(0.01)):
        model.compile(optimizer=compiled_with, triplet_weight=1.5)
        config = model.get_compile_config()
        model.compile_from_config(config)
        assert model.loss_config["triplet_weight"] == 1.5
        assert model.loss_config["learning_rate"] == config["learning_rate"]
