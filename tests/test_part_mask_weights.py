"""Per-part mask weights: absence sidecars → load_targets / the pipeline → eq. 5 on TensorFlow and JAX.

The expectation is a NumPy eq. 3-5 written here (per-image min-max
normalised maps, squared error summed over the map, RMSE over the images
weighted by each channel's own weights), in float64.
"""

import json
import os

import cv2
import numpy as np
import pytest
from workers import runner

from keras_mmga import losses
from keras_mmga.data.masks import MaskFormatError, channel_weights, check_grouping, load_targets, read_absence
from keras_mmga.data.pipeline import make_train_dataset

WORKER = os.path.join(os.path.dirname(__file__), "workers", "part_weights.py")
PARSER_LABELS = [2, 5, 9, 13, 14, 15, 16, 17, 18, 19]


def numpy_eq5(masks, maps, weights, parts, part_weight=0.5):
    """Eq. 3-5 in NumPy: weights (N, 1 + K), one column per mask channel."""

    def rmse(mask, s, w):
        low, high = s.min(axis=(1, 2), keepdims=True), s.max(axis=(1, 2), keepdims=True)
        err = np.sum((mask - (s - low) / (high - low)) ** 2, axis=(1, 2))
        return np.sqrt(np.sum(w * err) / np.sum(w)) if np.sum(w) > 0 else 0.0

    total = rmse(masks[..., 0], maps["module1_whole"], weights[:, 0])
    total += rmse(masks[..., 0], maps["module2_whole"], weights[:, 0])
    for i, p in enumerate(parts):
        total += part_weight * rmse(masks[..., 1 + i], maps[f"module2_{p}"], weights[:, 1 + i])
    return total


def _inputs(k, seed=0):
    import sys

    sys.path.insert(0, os.path.dirname(WORKER))
    import part_weights  # the worker's inputs, rebuilt here

    return part_weights.loss_inputs(k, seed), part_weights.PARTS[k]


@pytest.mark.parametrize("k", [2, 4])
def test_attention_loss_with_per_channel_weights_float64(k):
    (maps, masks, weights, sample_weight), parts = _inputs(k)
    combined = weights * sample_weight[:, None]
    expected = numpy_eq5(masks, maps, combined, parts)
    got = float(losses.attention_loss(masks, maps, combined, parts=parts))
    np.testing.assert_allclose(got, expected, rtol=1e-9)
    # A zero weight really drops the channel of that image: garbage there changes nothing.
    garbage = np.where(np.broadcast_to((combined == 0)[:, None, None, :], masks.shape), 7.0, masks)
    assert not np.array_equal(garbage, masks)
    assert float(losses.attention_loss(garbage, maps, combined, parts=parts)) == pytest.approx(got, rel=1e-12)


def test_per_image_weights_stay_valid_and_equal_repeated_columns():
    (maps, masks, weights, sample_weight), parts = _inputs(2)
    per_image = np.array([1.0, 0.0, 1.0, 1.0, 0.0, 1.0])
    a = float(losses.attention_loss(masks, maps, per_image, parts=parts))
    b = float(losses.attention_loss(masks, maps, np.repeat(per_image[:, None], 3, axis=1), parts=parts))
    assert a == pytest.approx(b, rel=1e-12)
    assert a == pytest.approx(numpy_eq5(masks, maps, np.repeat(per_image[:, None], 3, axis=1), parts), rel=1e-9)


# --- sidecars → load_targets -------------------------------------------------


def _write_set(root, absences):
    """Images (blank) and LIP masks: top half upper clothes, bottom half pants; sidecars as given."""
    images, masks = os.path.join(root, "images"), os.path.join(root, "masks")
    os.makedirs(images)
    os.makedirs(masks)
    label_map = np.zeros((64, 32), np.uint8)
    label_map[4:10, 8:24] = 13  # face
    label_map[10:32, 6:26] = 5
    label_map[32:60, 8:24] = 9
    samples = []
    for i, absent in enumerate(absences):
        name = f"{i:04d}_c1_{i}.jpg"
        cv2.imwrite(os.path.join(images, name), np.full((64, 32, 3), 100, np.uint8))
        cv2.imwrite(os.path.join(masks, name[:-4] + ".png"), label_map)
        if absent is not None:
            with open(os.path.join(masks, name[:-4] + ".json"), "w") as f:
                json.dump({"absent": absent, "labels": PARSER_LABELS}, f)
        samples.append((os.path.join(images, name), i // 2, 1))
    return images, masks, samples


def test_channel_weights_by_hand():
    groups = check_grouping(parts=("head", "torso", "legs", "feet"))
    # Waist-up crop: thighs, shins, feet absent: legs and feet weight 0.
    absence = ({9, 16, 17, 18, 19}, set(PARSER_LABELS))
    np.testing.assert_array_equal(channel_weights(absence, groups), [1, 1, 1, 0, 0])
    # Knee cut: thighs seen (pants 9 present), shins and feet absent: legs still count.
    absence = ({16, 17, 18, 19}, set(PARSER_LABELS))
    np.testing.assert_array_equal(channel_weights(absence, groups), [1, 1, 1, 1, 0])
    # No head: hair and face absent. The parser never writes hat / sunglasses (1, 4).
    absence = ({2, 13}, set(PARSER_LABELS))
    np.testing.assert_array_equal(channel_weights(absence, groups), [1, 0, 1, 1, 1])
    # Without "labels" every LIP body label counts: hat and sunglasses keep the head in.
    assert channel_weights(({2, 13}, set(range(1, 20))), groups)[1] == 1
    np.testing.assert_array_equal(channel_weights(None, groups), [1, 1, 1, 1, 1])


def test_load_targets_reads_sidecars_into_per_channel_weights(tmp_path):
    images, masks, samples = _write_set(str(tmp_path), [None, [9, 16, 17, 18, 19], [16, 17, 18, 19], [2, 13]])
    paths = [s[0] for s in samples]
    targets, weights = load_targets(paths, images, masks, (4, 2))
    np.testing.assert_array_equal(weights, [[1, 1, 1], [1, 1, 0], [1, 1, 1], [1, 1, 1]])
    targets4, weights4 = load_targets(paths, images, masks, (4, 2), parts=("head", "torso", "legs", "feet"))
    np.testing.assert_array_equal(weights4, [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0], [1, 0, 1, 1, 1]])
    assert targets4.shape == (4, 4, 2, 5)
    # part_weights=False: the (N,) weights of before, sidecars not read.
    _, flat = load_targets(paths, images, masks, (4, 2), part_weights=False)
    np.testing.assert_array_equal(flat, [1, 1, 1, 1])
    # No sidecar anywhere: (N,) as before; part_weights=True: all-ones columns.
    for p in paths:
        side = os.path.join(masks, os.path.basename(p)[:-4] + ".json")
        if os.path.exists(side):
            os.remove(side)
    assert load_targets(paths, images, masks, (4, 2))[1].shape == (4,)
    np.testing.assert_array_equal(load_targets(paths, images, masks, (4, 2), part_weights=True)[1], np.ones((4, 3)))


def test_missing_mask_zeroes_every_channel_and_bad_sidecar_is_one_error(tmp_path):
    images, masks, samples = _write_set(str(tmp_path), [[9, 16, 17, 18, 19], None])
    paths = [s[0] for s in samples]
    os.remove(os.path.join(masks, os.path.basename(paths[1])[:-4] + ".png"))
    with pytest.warns(UserWarning):
        _, weights = load_targets(paths, images, masks, (4, 2), missing="ignore")
    np.testing.assert_array_equal(weights, [[1, 1, 0], [0, 0, 0]])
    with open(os.path.join(masks, os.path.basename(paths[0])[:-4] + ".json"), "w") as f:
        f.write('{"absent": "pants"}')
    with pytest.raises(MaskFormatError, match="Absence sidecar .*0000_c1_0.json"):
        read_absence(os.path.join(masks, os.path.basename(paths[0])[:-4] + ".png"))


def test_pipeline_batches_carry_per_channel_weights(tmp_path):
    absences = [None, [9, 16, 17, 18, 19], None, [9, 16, 17, 18, 19]]
    images, masks, samples = _write_set(str(tmp_path), absences)
    data = make_train_dataset(
        samples,
        (64, 32),
        num_identities=2,
        num_instances=2,
        mask_root=masks,
        image_root=images,
        mask_mode="parts",
        augment_images=False,
        check_files="none",
    )
    x, y = next(iter(data.dataset))
    assert tuple(y["mask_weights"].shape) == (4, 3)
    labels = y["labels"].numpy()
    w = y["mask_weights"].numpy()
    # Identity i holds images 2i and 2i + 1; the odd ones have no bottom.
    for pid in (0, 1):
        rows = w[labels == pid]
        assert sorted(rows[:, 2].tolist()) == [0.0, 1.0]
        np.testing.assert_array_equal(rows[:, :2], 1.0)


@pytest.mark.slow
def test_train_step_with_per_channel_weights_on_tensorflow_and_jax(tmp_path):
    """One-step fits in float64 on both backends; eq. 5 against NumPy; weight-0 channels change nothing."""
    outs = {b: str(tmp_path / f"{b}.json") for b in ("tensorflow", "jax")}
    procs = [runner.spawn([WORKER, b, out], out + ".log") for b, out in outs.items()]
    runner.finish(procs, timeout=900)
    for backend, out in outs.items():
        if not os.path.exists(out):
            with open(out + ".log") as f:
                raise AssertionError(f"{backend} run failed:\n{f.read()[-4000:]}")
        with open(out) as f:
            result = json.load(f)
        assert result["backend"] == backend
        for k in (2, 4):
            (maps, masks, weights, sample_weight), parts = _inputs(k)
            expected = numpy_eq5(masks, maps, weights * sample_weight[:, None], parts)
            np.testing.assert_allclose(result["attention"][str(k)], expected, rtol=1e-9)
        assert result["fit"]["dtype"] == "float64"
        assert result["fit"]["same_where_weight_0"] == 0.0
        assert result["fit"]["differs_where_weight_1"] > 1e-6
