import os

import cv2
import numpy as np
import pytest
import tensorflow as tf

from keras_mmga.data import PKSampler, augment, check_images, make_eval_dataset, make_train_dataset


def _pids():
    # 6 identities with 1..6 images each.
    return np.concatenate([np.full(n, pid) for pid, n in enumerate([1, 2, 3, 4, 5, 6])])


def test_pk_batches_have_p_identities_of_k_images():
    pids = _pids()
    sampler = PKSampler(pids, num_identities=3, num_instances=2, seed=0)
    stream = iter(sampler)
    for _ in range(20):
        batch = next(stream)
        assert len(batch) == 6
        labels = pids[batch]
        blocks = labels.reshape(3, 2)
        assert np.all(blocks == blocks[:, :1])           # each block of K is one identity
        assert len(set(blocks[:, 0].tolist())) == 3      # P different identities


def test_replica_blocks_hold_whole_identities():
    pids = _pids()
    sampler = PKSampler(pids, num_identities=4, num_instances=3, num_replicas=2, seed=1)
    stream = iter(sampler)
    for _ in range(10):
        labels = pids[next(stream)]
        halves = labels.reshape(2, 6)
        assert not set(halves[0]) & set(halves[1])
    with pytest.raises(ValueError, match="divisible"):
        PKSampler(pids, num_identities=3, num_instances=2, num_replicas=2)


def test_sampler_is_seeded_and_uses_replacement_for_small_identities():
    pids = _pids()
    a = [next(iter(PKSampler(pids, 3, 4, seed=5))) for _ in range(2)]
    b = [b for b, _ in zip(PKSampler(pids, 3, 4, seed=5), range(2))]
    c = [b for b, _ in zip(PKSampler(pids, 3, 4, seed=6), range(2))]
    np.testing.assert_array_equal(a[0], b[0])
    assert any(not np.array_equal(x, y) for x, y in zip(b, c))
    with pytest.raises(ValueError, match="fewer than K=4"):
        PKSampler(pids, 3, 4, replacement=False)
    with pytest.raises(ValueError, match="fewer than P"):
        PKSampler(pids, 7, 2)


def test_flip_keeps_image_and_mask_aligned():
    image = np.zeros((32, 16, 3), np.float32)
    image[4:8, 0:4] = 255.0              # marked block at the left of the image
    masks = np.zeros((2, 2, 3), np.float32)
    masks[0, 0] = 1.0                    # the same place at map resolution
    flipped = 0
    for s in range(20):
        img, msk = augment.random_flip(tf.constant(image), tf.constant(masks), tf.constant([s, 0], tf.int64))
        img, msk = img.numpy(), msk.numpy()
        if img[5, 15, 0] == 255.0:
            flipped += 1
            assert msk[0, 1, 0] == 1.0 and msk[0, 0, 0] == 0.0
        else:
            assert img[5, 0, 0] == 255.0 and msk[0, 0, 0] == 1.0
    assert 0 < flipped < 20


def test_random_erasing_box_within_limits():
    image = tf.fill((128, 64, 3), 7.0)
    erased = 0
    for s in range(30):
        out = augment.random_erasing(image, tf.constant([s, 1], tf.int64), probability=0.5).numpy()
        changed = np.any(out != 7.0, axis=-1)
        if changed.any():
            erased += 1
            rows, cols = np.where(changed)
            area = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
            assert changed.sum() == area                       # one solid box
            assert 0.015 <= area / (128 * 64) <= 0.42
            np.testing.assert_allclose(out[rows[0], cols[0]], augment.IMAGENET_MEAN_RGB, rtol=1e-6)
    assert 5 < erased < 25


def _tiny_tree(root, n_ids=4, per_id=3):
    samples = []
    os.makedirs(root / "img" / "train")
    os.makedirs(root / "mask" / "train")
    for pid in range(n_ids):
        for j in range(per_id):
            name = f"{pid:04d}_c{j + 1}s1_000{j}00_01"
            image = np.full((64, 32, 3), 40 * pid, np.uint8)
            cv2.imwrite(str(root / "img" / "train" / f"{name}.jpg"), image)
            label = np.zeros((64, 32), np.uint8)
            label[8:32, 8:24] = 5
            label[32:60, 8:24] = 9
            cv2.imwrite(str(root / "mask" / "train" / f"{name}.png"), label)
            samples.append((str(root / "img" / "train" / f"{name}.jpg"), pid, j))
    return samples


def test_train_dataset_batches_and_reproducibility(tmp_path):
    samples = _tiny_tree(tmp_path)
    kwargs = dict(image_size=(64, 32), num_identities=2, num_instances=2, mask_root=tmp_path / "mask",
                  image_root=tmp_path / "img", seed=3)
    data = make_train_dataset(samples, **kwargs)
    assert data.batch_size == 4 and data.num_classes == 4 and data.steps_per_epoch >= 1
    images, targets = next(iter(data.dataset))
    assert images.shape == (4, 64, 32, 3) and images.dtype == tf.float32
    assert targets["masks"].shape == (4, 4, 2, 3) and targets["labels"].dtype == tf.int32
    np.testing.assert_array_equal(targets["mask_weights"], 1.0)
    # Upper clothes (5) over rows 8..31 and pants (9) over rows 32..59, columns
    # 8..23 of 32, area-averaged to 4x2 cells of 16x16 pixels (flip-symmetric).
    upper = np.array([0.25, 0.5, 0.0, 0.0])
    bottom = np.array([0.0, 0.0, 0.5, 0.375])
    got = targets["masks"].numpy()
    for channel, expected in ((0, upper + bottom), (1, upper), (2, bottom)):
        np.testing.assert_allclose(got[..., channel], np.broadcast_to(expected[None, :, None], (4, 4, 2)), atol=1e-6)
    again = next(iter(make_train_dataset(samples, **kwargs).dataset))
    np.testing.assert_array_equal(images, again[0])
    np.testing.assert_array_equal(targets["labels"], again[1]["labels"])


def test_corrupt_jpeg_and_missing_mask_are_reported_by_path(tmp_path):
    samples = _tiny_tree(tmp_path)
    bad = samples[1][0]
    with open(bad, "rb") as f:
        data = f.read()
    with open(bad, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(ValueError, match=os.path.basename(bad)):
        check_images([p for p, _, _ in samples])
    with pytest.raises(ValueError, match=os.path.basename(bad)):
        make_eval_dataset(samples, (64, 32))
    samples = samples[2:]
    os.remove(str(tmp_path / "mask" / "train" / os.path.basename(samples[0][0]).replace(".jpg", ".png")))
    with pytest.raises(FileNotFoundError, match=os.path.basename(samples[0][0]).replace(".jpg", ".png")):
        make_train_dataset(samples, (64, 32), 2, 2, mask_root=tmp_path / "mask", image_root=tmp_path / "img")


def test_eval_dataset_is_ordered_and_unaugmented(tmp_path):
    samples = _tiny_tree(tmp_path)
    batches = list(make_eval_dataset(samples, (64, 32), batch_size=5))
    images = np.concatenate([b.numpy() for b in batches])
    assert images.shape == (12, 64, 32, 3)
    np.testing.assert_allclose(images[:, 10, 10, 0], np.repeat([0, 40, 80, 120], 3), atol=2)
