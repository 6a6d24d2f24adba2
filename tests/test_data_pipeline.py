import os

import cv2
import numpy as np
import pytest
import tensorflow as tf

from keras_mmga.data import check_images, make_eval_dataset, make_train_dataset, pipeline


def _tiny_tree(root, n_ids=4, per_id=3, marked=False):
    """64x32 images of grey level 40*pid; LIP masks: upper clothes rows 8..31, pants 32..59, cols 8..23.

    With `marked`, the image's left 16 columns are white and the mask is
    upper clothes on exactly those columns instead.
    """
    samples = []
    os.makedirs(root / "img" / "train")
    os.makedirs(root / "mask" / "train")
    for pid in range(n_ids):
        for j in range(per_id):
            name = f"{pid:04d}_c{j + 1}s1_000{j}00_01"
            image = np.full((64, 32, 3), 40 * pid, np.uint8)
            label = np.zeros((64, 32), np.uint8)
            if marked:
                image[:, :16] = 255
                label[:, :16] = 5
            else:
                label[8:32, 8:24] = 5
                label[32:60, 8:24] = 9
            cv2.imwrite(str(root / "img" / "train" / f"{name}.jpg"), image)
            cv2.imwrite(str(root / "mask" / "train" / f"{name}.png"), label)
            samples.append((str(root / "img" / "train" / f"{name}.jpg"), pid, j))
    return samples


def _kwargs(root, **extra):
    return (
        dict(
            image_size=(64, 32),
            num_identities=2,
            num_instances=2,
            mask_root=root / "mask",
            image_root=root / "img",
            mask_mode="parts",
            seed=3,
        )
        | extra
    )


def test_train_batches_shapes_labels_and_mask_targets(tmp_path):
    samples = _tiny_tree(tmp_path)
    data = make_train_dataset(samples, **_kwargs(tmp_path))
    # 4 identities x 3 images: one whole group of K=2 each, 4 groups // P=2.
    assert data.batch_size == 4 and data.num_classes == 4 and data.steps_per_epoch == 2
    images, targets = next(iter(data.dataset))
    assert images.shape == (4, 64, 32, 3) and images.dtype == tf.float32
    assert targets["masks"].shape == (4, 4, 2, 3) and targets["masks"].dtype == tf.float32
    assert targets["labels"].dtype == tf.int32 and targets["mask_weights"].dtype == tf.float32
    np.testing.assert_array_equal(targets["mask_weights"], 1.0)
    labels = targets["labels"].numpy().reshape(2, 2)
    assert np.all(labels == labels[:, :1]) and labels[0, 0] != labels[1, 0]
    # Grey level 40*pid survives wherever the image was not erased.
    for image, label in zip(images.numpy(), targets["labels"].numpy()):
        assert np.median(image) == pytest.approx(40 * label, abs=2)
    # Upper clothes (5) over rows 8..31 and pants (9) over rows 32..59, columns
    # 8..23 of 32, area-averaged to 4x2 cells of 16x16 pixels (flip-symmetric).
    upper = np.array([0.25, 0.5, 0.0, 0.0])
    bottom = np.array([0.0, 0.0, 0.5, 0.375])
    got = targets["masks"].numpy()
    for channel, expected in ((0, upper + bottom), (1, upper), (2, bottom)):
        np.testing.assert_allclose(got[..., channel], np.broadcast_to(expected[None, :, None], (4, 4, 2)), atol=1e-6)


def test_train_batches_are_reproducible_and_skippable(tmp_path):
    samples = _tiny_tree(tmp_path)
    first = [b for b, _ in zip(make_train_dataset(samples, **_kwargs(tmp_path)).dataset, range(4))]
    again = [b for b, _ in zip(make_train_dataset(samples, **_kwargs(tmp_path)).dataset, range(4))]
    skipped = next(iter(make_train_dataset(samples, **_kwargs(tmp_path)).dataset.skip(3)))
    for (x, y), (x2, y2) in zip(first, again):
        np.testing.assert_array_equal(x, x2)
        np.testing.assert_array_equal(y["labels"], y2["labels"])
    np.testing.assert_array_equal(first[3][0], skipped[0])
    other = next(iter(make_train_dataset(samples, **_kwargs(tmp_path, seed=4)).dataset))
    assert not all(np.array_equal(a, b) for a, b in zip(first[0], other))


def test_flip_keeps_image_and_mask_aligned(tmp_path):
    samples = _tiny_tree(tmp_path, marked=True)
    data = make_train_dataset(samples, **_kwargs(tmp_path, erasing_probability=0.0))
    flipped = kept = 0
    for images, targets in [b for b, _ in zip(data.dataset, range(6))]:
        for image, mask in zip(images.numpy(), targets["masks"].numpy()):
            if image[30, 2, 0] > 250:  # white block still on the left
                kept += 1
                np.testing.assert_array_equal(mask[..., 1], [[1, 0]] * 4)
            else:
                assert image[30, 29, 0] > 250
                flipped += 1
                np.testing.assert_array_equal(mask[..., 1], [[0, 1]] * 4)
    assert flipped and kept


def test_no_augmentation_and_cache_give_the_decoded_images(tmp_path):
    samples = _tiny_tree(tmp_path)
    plain = make_train_dataset(samples, **_kwargs(tmp_path, augment_images=False))
    cached = make_train_dataset(samples, **_kwargs(tmp_path, augment_images=False, cache_images=True))
    for (x, y), (xc, yc) in zip(
        [b for b, _ in zip(plain.dataset, range(3))], [b for b, _ in zip(cached.dataset, range(3))]
    ):
        np.testing.assert_array_equal(y["labels"], yc["labels"])
        np.testing.assert_allclose(x, xc, atol=0.5)  # the cache rounds to uint8
        for image, label in zip(x.numpy(), y["labels"].numpy()):
            np.testing.assert_allclose(image, 40 * label, atol=2)


def test_missing_masks_ignored_get_weight_zero(tmp_path):
    samples = _tiny_tree(tmp_path, n_ids=2, per_id=2)
    gone = samples[0][0]
    os.remove(str(tmp_path / "mask" / "train" / os.path.basename(gone).replace(".jpg", ".png")))
    data = make_train_dataset(samples, **_kwargs(tmp_path, missing_masks="ignore"))
    images, targets = next(iter(data.dataset))
    # 2 identities x 2 images, P=2, K=2: the batch is all four samples, and
    # only the first sample (identity 0) lacks its mask.
    weights, labels = targets["mask_weights"].numpy(), targets["labels"].numpy()
    masks = targets["masks"].numpy()
    assert sorted(weights.tolist()) == [0.0, 1.0, 1.0, 1.0]
    assert labels[weights == 0].tolist() == [0]
    assert np.all(masks[weights == 0] == 0) and np.all(masks[weights == 1].max(axis=(1, 2, 3)) > 0)
    # No mask folder at all: only on purpose (missing_masks="ignore").
    no_masks = make_train_dataset(samples, **_kwargs(tmp_path, mask_root=None, missing_masks="ignore"))
    np.testing.assert_array_equal(next(iter(no_masks.dataset))[1]["mask_weights"], 0.0)


def test_a_mask_mode_without_masks_is_an_error_not_a_zero_loss(tmp_path):
    samples = _tiny_tree(tmp_path, n_ids=2, per_id=2)
    with pytest.raises(ValueError, match="mask_mode='parts' needs mask_root.*missing_masks='ignore'"):
        make_train_dataset(samples, **_kwargs(tmp_path, mask_root=None))
    # The default is no mask targets at all: a mask-supervised model then
    # refuses the batches instead of training with an attention loss of 0.
    plain = make_train_dataset(samples, image_size=(64, 32), num_identities=2, num_instances=2, seed=3)
    _, targets = next(iter(plain.dataset))
    assert set(targets) == {"labels"}
    with pytest.raises(ValueError, match="mask_mode must be None or one of"):
        make_train_dataset(samples, **_kwargs(tmp_path, mask_mode="both"))


def test_missing_mask_is_an_error_naming_the_file(tmp_path):
    samples = _tiny_tree(tmp_path, n_ids=2, per_id=2)
    mask = str(tmp_path / "mask" / "train" / os.path.basename(samples[1][0]).replace(".jpg", ".png"))
    os.remove(mask)
    with pytest.raises(FileNotFoundError, match=mask):
        make_train_dataset(samples, **_kwargs(tmp_path))


def test_corrupt_jpegs_are_reported_by_path(tmp_path):
    samples = _tiny_tree(tmp_path)
    truncated, scrambled = samples[1][0], samples[4][0]
    with open(truncated, "rb") as f:
        data = f.read()
    with open(truncated, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(ValueError, match=truncated):
        check_images([p for p, _, _ in samples])
    with pytest.raises(ValueError, match=truncated):
        make_eval_dataset(samples, (64, 32))
    with pytest.raises(ValueError, match=truncated):
        make_train_dataset(samples, **_kwargs(tmp_path))
    # Right signature and end marker, garbage in between: only decoding finds it.
    with open(scrambled, "rb") as f:
        data = f.read()
    with open(scrambled, "wb") as f:
        f.write(data[:20] + b"\0" * (len(data) - 22) + data[-2:])
    rest = [s for s in samples if s[0] != truncated]
    check_images([p for p, _, _ in rest], mode="header")
    with pytest.raises(ValueError, match=scrambled):
        make_train_dataset(rest, **_kwargs(tmp_path))


def test_truncated_png_is_reported_by_path(tmp_path):
    image = np.full((64, 32, 3), 90, np.uint8)
    whole, cut = str(tmp_path / "whole.png"), str(tmp_path / "cut.png")
    cv2.imwrite(whole, image)
    with open(whole, "rb") as f:
        data = f.read()
    assert data.endswith(b"IEND\xaeB`\x82")
    with open(cut, "wb") as f:
        f.write(data[:-12])  # the IEND chunk lost: decoders may still read the pixels
    check_images([whole])
    with pytest.raises(ValueError, match=f"truncated PNG {cut!r}"):
        check_images([whole, cut], mode="header")
    with pytest.raises(ValueError, match=cut):
        make_eval_dataset([whole, cut], (64, 32))


def _take(dataset, n):
    return [(x.numpy(), {k: v.numpy() for k, v in y.items()}) for (x, y), _ in zip(dataset, range(n))]


@pytest.mark.parametrize("cache_images", [False, True])
def test_start_batch_continues_the_stream_without_decoding_skipped_batches(tmp_path, monkeypatch, cache_images):
    # 4 identities x 3 images, P=K=2: 2 batches per sampler epoch, so batch
    # 25 is the second batch of the 13th epoch.
    samples = _tiny_tree(tmp_path)
    kw = _kwargs(tmp_path, cache_images=cache_images, check_files="none")
    start, n = 25, 3
    fresh = _take(make_train_dataset(samples, **kw).dataset, start + n)

    loads = []
    decode_resize = pipeline.decode_resize

    def counting(path, image_size):
        note = tf.py_function(lambda p: loads.append(p.numpy()) or 0, [path], tf.int32)
        with tf.control_dependencies([note]):
            return tf.identity(decode_resize(path, image_size))

    monkeypatch.setattr(pipeline, "decode_resize", counting)
    resumed = make_train_dataset(samples, **kw, start_batch=start)
    cached = len(loads)  # the cache decodes every image once, up front
    assert cached == (len(samples) if cache_images else 0)
    got = _take(resumed.dataset, n)
    for (x, y), (xf, yf) in zip(got, fresh[start:], strict=True):
        np.testing.assert_array_equal(x, xf)
        assert set(y) == set(yf) == {"labels", "masks", "mask_weights"}
        for key in y:
            np.testing.assert_array_equal(y[key], yf[key])
    # Skipping through the decode map would load start * 4 = 100 images
    # before the first batch; the read-ahead of a few batches loads far fewer.
    decoded = len(loads) - cached
    assert decoded == 0 if cache_images else n * 4 <= decoded < start * 4
    with pytest.raises(ValueError, match="start_batch must be ≥ 0"):
        make_train_dataset(samples, **kw, start_batch=-1)


def test_bad_arguments(tmp_path):
    samples = _tiny_tree(tmp_path)
    with pytest.raises(ValueError, match="divisible by 16"):
        make_train_dataset(samples, **_kwargs(tmp_path, image_size=(60, 32)))
    with pytest.raises(ValueError, match="image_root"):
        make_train_dataset(samples, **_kwargs(tmp_path, image_root=None))
    with pytest.raises(ValueError, match="divisible by the number of replicas"):
        make_train_dataset(samples, **_kwargs(tmp_path, num_identities=3, num_replicas=2))


def test_eval_dataset_is_ordered_and_unaugmented(tmp_path):
    samples = _tiny_tree(tmp_path)
    batches = list(make_eval_dataset(samples, (64, 32), batch_size=5))
    assert [b.shape[0] for b in batches] == [5, 5, 2]
    images = np.concatenate([b.numpy() for b in batches])
    np.testing.assert_allclose(
        images, np.repeat([0, 40, 80, 120], 3)[:, None, None, None] * np.ones((1, 64, 32, 3)), atol=2
    )


def test_epoch_definition_reaches_the_sampler(tmp_path):
    # 5 identities x 6 images, P=2, K=2: identity epochs ceil(5/2) = 3 steps; image
    # epochs 5 x 3 groups // 2 = 7 steps.
    samples = _tiny_tree(tmp_path, n_ids=5, per_id=6)
    data = make_train_dataset(samples, **_kwargs(tmp_path, check_files="none"))
    assert data.epoch == "identities" and data.steps_per_epoch == 3
    data = make_train_dataset(samples, **_kwargs(tmp_path, check_files="none", epoch="images"))
    assert data.epoch == "images" and data.steps_per_epoch == 7 and data.sampler.epoch_definition == "images"
    with pytest.raises(ValueError, match="epoch must be one of"):
        make_train_dataset(samples, **_kwargs(tmp_path, epoch="pass"))


def test_more_bad_arguments_are_named_where_they_enter(tmp_path):
    samples = _tiny_tree(tmp_path)
    cases = [
        (dict(erasing_probability=1.5), "erasing_probability must be a number in"),
        (dict(image_size=64), r"image_size must be \(H, W\)"),
        (dict(image_size=(64.5, 32)), r"image_size must be \(H, W\)"),
        (dict(num_instances=2.5), "num_instances must be an int"),
        (dict(mask_format="binary"), "Binary whole-body masks have no parts"),
        (dict(mask_format="rgb"), "mask_format must be one of"),
        (dict(label_groups={"upper": [5], "bottom": []}), r"label_groups\['bottom'\] is empty"),
        (dict(label_groups={"upper": [5, 25], "bottom": [9]}), r"label_groups\['upper'\] holds \[25\]"),
        (dict(label_groups={"top": [5]}), "keys must be 'upper' and 'bottom'"),
        (dict(dress_group="skirt"), "dress_group must be one of"),
        (dict(start_batch=-1), "start_batch must be ≥ 0"),
    ]
    for extra, message in cases:
        with pytest.raises(ValueError, match=message):
            make_train_dataset(samples, **_kwargs(tmp_path, **extra))
    with pytest.raises(ValueError, match=r"samples\[1\] has pid 0\.5"):
        make_train_dataset([samples[0], (samples[1][0], 0.5, 0)], **_kwargs(tmp_path))
    with pytest.raises(ValueError, match=r"samples\[0\] must be \(path, pid, camid\)"):
        make_train_dataset([samples[0][0]], **_kwargs(tmp_path))
    # An empty bottom group is fine where the bottom target is not a part (dmga's halves).
    make_train_dataset(
        samples,
        **_kwargs(tmp_path, mask_mode="halves", check_files="none", label_groups={"upper": [5, 9], "bottom": []}),
    )
    with pytest.raises(ValueError, match="batch_size must be ≥ 1"):
        make_eval_dataset(samples, (64, 32), batch_size=0)
    with pytest.raises(ValueError, match="divisible by 16"):
        make_eval_dataset(samples, (60, 32))


def test_file_check_and_mask_targets_show_progress(tmp_path, capsys):
    samples = _tiny_tree(tmp_path)
    make_train_dataset(samples, **_kwargs(tmp_path, verbose=True))
    err = capsys.readouterr().err
    assert "check images (decode): 12/12 images" in err and "mask targets (parts): 12/12 masks" in err
    make_train_dataset(samples, **_kwargs(tmp_path))
    assert capsys.readouterr().err == ""  # quiet by default
    make_train_dataset(samples, **_kwargs(tmp_path, verbose=True, check_files="none", cache_images=True))
    assert "cache images: 12/12 images" in capsys.readouterr().err


def _four_part_tree(root, n_ids=2, per_id=2):
    """64x32 images; LIP masks on columns 8..23: face rows 0..15, upper clothes 16..31, pants 32..47, shoes 48..63."""
    samples = []
    os.makedirs(root / "img" / "train")
    os.makedirs(root / "mask" / "train")
    label = np.zeros((64, 32), np.uint8)
    for row, lip in enumerate((13, 5, 9, 18)):
        label[16 * row : 16 * (row + 1), 8:24] = lip
    for pid in range(n_ids):
        for j in range(per_id):
            name = f"{pid:04d}_c{j + 1}s1_000{j}00_01"
            cv2.imwrite(str(root / "img" / "train" / f"{name}.jpg"), np.full((64, 32, 3), 40 * pid, np.uint8))
            cv2.imwrite(str(root / "mask" / "train" / f"{name}.png"), label)
            samples.append((str(root / "img" / "train" / f"{name}.jpg"), pid, j))
    return samples


def test_four_named_parts_give_five_mask_channels(tmp_path):
    samples = _four_part_tree(tmp_path)
    data = make_train_dataset(samples, **_kwargs(tmp_path, parts=("head", "torso", "legs", "feet")))
    assert data.dataset.element_spec[1]["masks"] == tf.TensorSpec((4, 4, 2, 5), tf.float32)
    _, targets = next(iter(data.dataset))
    got = targets["masks"].numpy()
    assert got.shape == (4, 4, 2, 5)
    # Each 16x16 cell holds 8 of its 16 columns of one part (flip-symmetric): 0.5 in that part's row of cells.
    np.testing.assert_allclose(got[..., 0], 0.5, atol=1e-6)
    for part in range(4):
        expected = np.zeros((4, 2))
        expected[part] = 0.5
        np.testing.assert_allclose(got[..., 1 + part], np.broadcast_to(expected, (4, 4, 2)), atol=1e-6)
    # Custom groups and a part order of one's own: "arms" holds nothing here, "shoes" row 3 of cells.
    custom = make_train_dataset(
        samples, **_kwargs(tmp_path, parts=("shoes", "head"), check_files="none", label_groups={"shoes": [18, 19]})
    )
    masks = next(iter(custom.dataset))[1]["masks"].numpy()
    assert masks.shape == (4, 4, 2, 3)
    np.testing.assert_allclose(masks[:, 3, :, 1], 0.5, atol=1e-6)
    np.testing.assert_allclose(masks[:, 0, :, 2], 0.5, atol=1e-6)
    np.testing.assert_allclose(masks[:, 1:3, :, 0], 0.0, atol=1e-6)  # whole = shoes ∪ head only


def test_default_parts_are_upper_and_bottom(tmp_path):
    samples = _tiny_tree(tmp_path, n_ids=2, per_id=2)
    default = next(iter(make_train_dataset(samples, **_kwargs(tmp_path)).dataset))[1]
    named = next(iter(make_train_dataset(samples, **_kwargs(tmp_path, parts=["upper", "bottom"])).dataset))[1]
    np.testing.assert_array_equal(default["masks"], named["masks"])
    # No mask folder on purpose: all-zero targets of the parts' channel count.
    no_masks = make_train_dataset(
        samples, **_kwargs(tmp_path, mask_root=None, missing_masks="ignore", parts=("head", "feet"))
    )
    assert no_masks.dataset.element_spec[1]["masks"].shape == (4, 4, 2, 3)
    with_legs = make_train_dataset(
        samples, **_kwargs(tmp_path, mask_root=None, missing_masks="ignore", parts=("head", "torso", "legs", "feet"))
    )
    assert with_legs.dataset.element_spec[1]["masks"].shape == (4, 4, 2, 5)


def test_bad_parts_arguments(tmp_path):
    samples = _tiny_tree(tmp_path, n_ids=2, per_id=2)
    four = ("head", "torso", "legs", "feet")
    cases = [
        (dict(mask_mode="halves", parts=four), r"parts=\('head', .*needs mask_mode='parts'.*mask_mode='halves'"),
        (dict(mask_mode="whole", parts=("upper", "bottom")), r"needs mask_mode='parts'.*mask_mode='whole'"),
        (dict(mask_mode=None, parts=four), r"needs mask_mode='parts'.*mask_mode=None"),
        (dict(parts=("head", "hands")), "Unknown part group 'hands' in parts: the known groups are head, torso"),
        (dict(parts=("head", "head")), "'head' more than once"),
        (dict(parts=("upper", "torso")), r"labels \[3, 5, 6, 7, 10, 11, 14, 15\] are in both the upper and torso"),
        (dict(parts=("head", "arms"), label_groups={"arms": []}), r"label_groups\['arms'\] is empty"),
        (dict(parts=four, label_groups={"upper": [5]}), r"keys must be 'head', 'torso', 'legs' and 'feet'"),
        (dict(parts=four, mask_format="binary"), "Binary whole-body masks have no parts"),
    ]
    for extra, message in cases:
        with pytest.raises(ValueError, match=message):
            make_train_dataset(samples, **_kwargs(tmp_path, check_files="none", **extra))
