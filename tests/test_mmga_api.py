"""MMGA's Keras API: epoch-counted decay, sample weights, checked inputs (issue 12)."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from factories import pk_targets, random_images

from keras_mmga import MMGA

SIZE = (64, 32, 3)


def _images(n, shape=SIZE, seed=0):
    return random_images(n, shape, seed)


def _targets(n, num_ids, size=(4, 2), seed=1):
    return pk_targets(n, num_ids, size, seed=seed)


class _LearningRates(keras.callbacks.Callback):
    """Learning rate at each epoch's start."""

    def __init__(self):
        super().__init__()
        self.values = []

    def on_epoch_begin(self, epoch, logs=None):
        self.values.append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))


class _StopAt(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError("simulated crash")


@pytest.fixture(scope="module")
def baseline_data():
    x = _images(8)
    labels = np.repeat(np.arange(4), 2).astype("int32")
    return x, labels, tf.data.Dataset.from_tensors((x, labels)).repeat()


def _baseline(**compile_kwargs):
    keras.utils.set_random_seed(0)
    model = MMGA(4, variant="baseline", input_shape=SIZE, backbone_weights=None)
    model.compile(**({"learning_rate": 0.1, "lr_decay_epochs": 1, "lr_decay_rate": 0.5} | compile_kwargs))
    return model


def _lr(model):
    return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))


@pytest.mark.slow
def test_decay_counts_epochs_of_any_length_across_fits_save_and_load(baseline_data, tmp_path):
    _, _, ds = baseline_data
    model = _baseline()
    rates = _LearningRates()
    model.fit(ds, steps_per_epoch=1, epochs=1, verbose=0, callbacks=[rates])
    model.fit(ds, steps_per_epoch=3, epochs=1, verbose=0, callbacks=[rates])
    # 2 epochs (4 steps) run: 0.1 · 0.5² (a steps-based count would give 0.1 · 0.5⁴).
    assert rates.values == pytest.approx([0.1, 0.05])
    assert _lr(model) == pytest.approx(0.025)
    assert int(model.optimizer.completed_epochs) == 2 and int(model.optimizer.iterations) == 4

    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert _lr(loaded) == pytest.approx(0.025)
    rates = _LearningRates()
    loaded.fit(ds, steps_per_epoch=2, epochs=2, verbose=0, callbacks=[rates])
    assert rates.values == pytest.approx([0.025, 0.0125])
    assert _lr(loaded) == pytest.approx(0.1 * 0.5**4)


@pytest.mark.slow
def test_decay_resumes_with_backup_and_restore(baseline_data, tmp_path):
    _, _, ds = baseline_data
    backup = str(tmp_path / "backup")
    model = _baseline()
    with pytest.raises(RuntimeError, match="simulated crash"):
        model.fit(
            ds,
            steps_per_epoch=2,
            epochs=4,
            verbose=0,
            callbacks=[keras.callbacks.BackupAndRestore(backup, delete_checkpoint=False), _StopAt(2)],
        )
    # A fresh process: new model, same command.
    restarted = _baseline()
    rates = _LearningRates()
    restarted.fit(
        ds, steps_per_epoch=2, epochs=4, verbose=0, callbacks=[keras.callbacks.BackupAndRestore(backup), rates]
    )
    assert rates.values == pytest.approx([0.025, 0.0125])  # epochs 3 and 4
    assert int(restarted.optimizer.completed_epochs) == 4 and int(restarted.optimizer.iterations) == 8


def test_checkpoint_without_epoch_counter_continues_the_step_schedule():
    # Files written before the counter existed hold every optimizer variable
    # but it: the counter is then the epoch the step-based schedule was at.
    model = _baseline(steps_per_epoch=3)
    optimizer = model.optimizer
    optimizer.build(model.trainable_variables)
    old = {str(i): keras.ops.convert_to_numpy(v) for i, v in enumerate(optimizer.variables[:-1])}
    old["0"] = np.array(7, old["0"].dtype)  # iterations
    old["5"] = np.full_like(old["5"], 0.25)  # a momentum buffer
    optimizer.load_own_variables(old)
    assert int(optimizer.iterations) == 7 and int(optimizer.completed_epochs) == 2  # 7 // 3
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(optimizer.variables[5]), old["5"])
    assert _lr(model) == pytest.approx(0.025)


def _reference_losses(model, outputs, labels, masks, w, margin=0.3):
    """The weighted losses of MMGA written out in float64 NumPy."""

    def ce(logits):
        logits = np.asarray(logits, "float64")
        logp = logits - logits.max(1, keepdims=True)
        logp = logp - np.log(np.exp(logp).sum(1, keepdims=True))
        return -logp[np.arange(len(labels)), labels]

    out = {
        "whole_softmax": np.sum(w * ce(outputs["whole_logits"])) / w.sum(),
        "local_softmax": np.sum(w * ce(outputs["local_logits"])) / w.sum(),
    }
    f = np.asarray(outputs["features"], "float64")
    d = np.sqrt(np.maximum(((f[:, None] - f[None]) ** 2).sum(-1), 1e-12))
    hinge, valid = np.zeros(len(f)), np.zeros(len(f))
    for i in range(len(f)):
        pos = [j for j in range(len(f)) if labels[j] == labels[i] and j != i]
        neg = [j for j in range(len(f)) if labels[j] != labels[i]]
        if pos and neg:
            valid[i] = 1
            hinge[i] = max(0.0, d[i, pos].max() - d[i, neg].min() + margin)
    out["triplet"] = np.sum(w * hinge) / np.sum(w * valid)
    att = 0.0
    for name, channel, weight in (
        ("module1_whole", 0, 1.0),
        ("module2_whole", 0, 1.0),
        ("module2_upper", 1, 0.5),
        ("module2_bottom", 2, 0.5),
    ):
        s = np.asarray(outputs["attention_maps"][name], "float64")
        lo, hi = s.min((1, 2), keepdims=True), s.max((1, 2), keepdims=True)
        # Eq. 3; a flat map (range <= 1e-6: inference-mode maps of an untrained
        # model are) has no shape and normalises to 0.
        flat = (hi - lo) <= 1e-6
        normalised = np.where(flat, 0.0, (s - lo) / np.where(flat, 1.0, hi - lo))
        err = ((masks[..., channel] - normalised) ** 2).sum((1, 2))
        att += weight * np.sqrt(np.sum(w * err) / w.sum())
    out["attention"] = att
    out["loss"] = out["whole_softmax"] + out["local_softmax"] + 2.0 * out["triplet"] + 0.1 * att
    return out


@pytest.mark.slow
def test_sample_weight_weights_every_loss_term():
    keras.utils.set_random_seed(0)
    model = MMGA(4, variant="mmga", input_shape=SIZE, backbone_weights=None)
    model.compile(learning_rate=0.01)
    x, y = _images(8), _targets(8, 4)
    w = np.array([1.0, 0.0, 5.0, 0.2, 1.0, 4.0, 0.0, 2.0], "float32")
    # Classifiers far from their ~uniform initial output, so images differ in cross-entropy.
    rng = np.random.RandomState(2)
    for dense in (model.whole_classifier, model.local_classifier):
        dense.kernel.assign(rng.normal(0, 0.5, dense.kernel.shape).astype("float32"))
    # evaluate(): inference-mode outputs at the starting weights.
    outputs = keras.tree.map_structure(keras.ops.convert_to_numpy, model.compute_outputs(x, training=False))
    expected = _reference_losses(model, outputs, y["labels"], y["masks"], w.astype("float64"))
    got = model.evaluate(x, y, sample_weight=w, batch_size=8, verbose=0, return_dict=True)
    for key, value in expected.items():
        np.testing.assert_allclose(got[key], value, rtol=1e-4, err_msg=key)

    # The training loss of the first step, at the starting weights.
    outputs = keras.tree.map_structure(keras.ops.convert_to_numpy, model.compute_outputs(x, training=True))
    expected = _reference_losses(model, outputs, y["labels"], y["masks"], w.astype("float64"))
    unweighted = _reference_losses(model, outputs, y["labels"], y["masks"], np.ones(8))
    # The weights move every term by far more than the tolerance below.
    for key, value in expected.items():
        assert abs(value - unweighted[key]) > 1e-3 * abs(value), key
    history = model.fit(x, y, sample_weight=w, batch_size=8, epochs=1, verbose=0).history
    for key, value in expected.items():
        np.testing.assert_allclose(history[key][0], value, rtol=1e-4, err_msg=key)


def test_class_weight_and_bad_sample_weight_are_clear_errors(baseline_data):
    x, labels, _ = baseline_data
    model = _baseline()
    with pytest.raises(ValueError, match="class_weight.*sample_weight"):
        model.fit(x, labels, class_weight={0: 1.0, 1: 2.0}, verbose=0)
    with pytest.raises(ValueError, match=r"sample_weight must be finite and ≥ 0"):
        model.fit(x, labels, sample_weight=-np.ones(8), verbose=0)
    with pytest.raises(ValueError, match=r"sample_weight must be one weight per image, shape \(8,\)"):
        model.fit(x, labels, sample_weight=np.ones(5), verbose=0)


@pytest.mark.slow
def test_image_size_is_checked_on_every_call(baseline_data):
    x, labels, ds = baseline_data
    model = _baseline()
    model.fit(ds, steps_per_epoch=1, epochs=1, verbose=0)
    other = _images(8, (128, 64, 3))
    message = r"x has images of 128×64 but the model takes 64×32"
    with pytest.raises(ValueError, match=message):
        model.fit(other, labels, batch_size=8, verbose=0)
    with pytest.raises(ValueError, match=message):
        model.fit(tf.data.Dataset.from_tensors((other, labels)).repeat(), steps_per_epoch=1, verbose=0)
    with pytest.raises(ValueError, match=message):
        model.evaluate(other, labels, verbose=0)
    with pytest.raises(ValueError, match=message):
        model.predict(other, verbose=0)
    with pytest.raises(ValueError, match=message):
        model.train_on_batch(other, labels)
    with pytest.raises(ValueError, match=message):
        model.predict_on_batch(other)

    # A generator is seen only by the step, which TensorFlow retraced with
    # relaxed (unknown) image dims: the in-graph check.
    def batches():
        while True:
            yield other, labels

    with pytest.raises(ValueError, match=r"x has images of another size than the model's input 64×32×3"):
        model.fit(batches(), steps_per_epoch=1, verbose=0)
    with pytest.raises(ValueError, match=r"must have 3 \(RGB\) channels, got 1 \(grayscale"):
        model.predict(other[..., :1][:, :64, :32], verbose=0)


@pytest.mark.slow
def test_bad_labels_masks_and_targets_are_one_line_errors():
    model = MMGA(4, variant="mmga", input_shape=SIZE, backbone_weights=None)
    model.compile()
    x, y = _images(8), _targets(8, 4)
    cases = [
        (dict(y, labels=np.arange(8)), r"labels must be in \[0, num_classes = 4\); got the label 7"),
        (dict(y, labels=-np.ones(8, "int32")), r"negative label -1"),
        (dict(y, labels=np.eye(4)[y["labels"]]), r"looks one-hot"),
        (dict(y, labels=y["labels"] + 0.5), r"non-integer value 0.5"),
        (dict(y, masks=y["masks"][:, :2]), r"masks must have shape \(N, 4, 2, 3\)"),
        (dict(y, masks=y["masks"] * 255), r"masks must be in \[0, 1\].*divide by 255"),
        ((y["labels"], y["masks"]), r"use a dict"),
    ]
    for targets, message in cases:
        with pytest.raises(ValueError, match=message):
            model.fit(x, targets, batch_size=8, verbose=0)
    with pytest.raises(ValueError, match=r"pixels in \[0, 255\]"):
        model.fit(x - 128, y, batch_size=8, verbose=0)
    # From a dataset the values are only seen inside the step: same message, one line.
    ds = tf.data.Dataset.from_tensors((x, dict(y, labels=np.arange(8, dtype="int32")))).repeat()
    with pytest.raises(ValueError, match=r"^MMGA input check: labels must be in \[0, num_classes = 4\)") as err:
        model.fit(ds, steps_per_epoch=1, verbose=0)
    assert "\n" not in str(err.value)
    for shape in ((64, 32), (64, 40, 3), (64, 32, 1)):
        with pytest.raises(ValueError, match=r"input_shape must be \(H, W, 3\) with H and W multiples of 16"):
            MMGA(4, input_shape=shape, backbone_weights=None)


@pytest.mark.slow
def test_settings_that_silence_a_loss_term_are_refused_or_warned(baseline_data):
    x, labels, ds = baseline_data
    unsupervised = MMGA(4, variant="baseline_att", input_shape=SIZE, backbone_weights=None)
    with pytest.raises(ValueError, match=r"no mask supervision"):
        unsupervised.compile(attention_weight=0.2)
    # The recipe's own values are what the engine and saved configs pass for every variant.
    unsupervised.compile(attention_weight=0.1, part_attention_weight=0.5)
    with pytest.raises(ValueError, match=r"no upper/bottom"):
        MMGA(4, variant="wmga", input_shape=SIZE, backbone_weights=None).compile(part_attention_weight=0.7)
    model = _baseline()
    with pytest.raises(ValueError, match=r"triplet_margin must be ≥ 0"):
        model.compile(triplet_margin=-0.3)
    model = _baseline()
    with pytest.warns(UserWarning, match=r"K = 1.*triplet term is 0"):
        model.fit(x[:4], labels[::2], batch_size=4, epochs=1, verbose=0)


@pytest.mark.slow
def test_fit_on_a_dataset_does_not_warn_about_shuffle(baseline_data):
    import warnings

    _, _, ds = baseline_data
    model = _baseline()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(ds, steps_per_epoch=1, epochs=1, verbose=0)
    assert not [w for w in caught if "shuffle" in str(w.message)]
