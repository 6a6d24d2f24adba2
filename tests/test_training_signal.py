"""No run where a loss term silently vanishes or a target is wrong (issue 27).

Each case is refused or warned where it enters.

The cases, and where each is caught:

* K = 1 or P = 1 (no positive / no negative for the batch-hard triplet): `TrainConfig.validate`
  refuses (CLI and `train`), `make_train_dataset` warns (the Python API);
* a loss weight of 0 (triplet, attention, part attention): `MMGA.compile` warns;
* a mask-supervised mode without any mask (`mask_root=None`, `missing_masks="ignore"`):
  `make_train_dataset` warns; a mask folder where no image has a mask: refused (load_targets);
* masks given to a variant that does not read them: `TrainConfig.validate` warns;
* a mask PNG of another size than its image, or all background: refused (`"error"`) or weight 0
  and counted (`"ignore"`);
* samples of the test split (`market.query`), or pids that are not 0..N-1: refused;
* labels beyond `num_classes`: refused by the model's batch checks (tests/test_mmga_api.py).
"""

import os
import warnings

import cv2
import numpy as np
import pytest

from keras_mmga.data import make_train_dataset
from keras_mmga.engine.config import TrainConfig


def _tree(root, folder="bounding_box_train", n_ids=3, per_id=2, mask=None):
    """64x32 images; LIP masks with upper clothes (5) and pants (9), or `mask(pid, j)`'s array."""
    samples = []
    for sub in ("img", "mask"):
        os.makedirs(root / sub / folder, exist_ok=True)
    for pid in range(n_ids):
        for j in range(per_id):
            name = f"{pid + 1:04d}_c{j + 1}s1_000{j}00_01"
            cv2.imwrite(str(root / "img" / folder / f"{name}.jpg"), np.full((64, 32, 3), 40 * pid, np.uint8))
            label = np.zeros((64, 32), np.uint8)
            label[8:32, 8:24], label[32:60, 8:24] = 5, 9
            label = label if mask is None else mask(pid, j, label)
            cv2.imwrite(str(root / "mask" / folder / f"{name}.png"), label)
            samples.append((str(root / "img" / folder / f"{name}.jpg"), pid, j))
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
            check_files="header",
        )
        | extra
    )


@pytest.mark.parametrize("p,k,which", [(4, 1, "no anchor has a positive"), (1, 4, "no anchor has a negative")])
def test_triplet_without_positives_or_negatives(p, k, which, tmp_path):
    with pytest.raises(ValueError, match=which):
        TrainConfig("d", "o", variant="baseline", num_identities=p, num_instances=k).validate()
    # On purpose, without the triplet term: accepted.
    TrainConfig(
        str(tmp_path), str(tmp_path / "o"), variant="baseline", num_identities=p, num_instances=k, triplet_weight=0.0
    ).validate()
    samples = _tree(tmp_path, n_ids=4)
    with pytest.warns(UserWarning, match=which):
        make_train_dataset(samples, **_kwargs(tmp_path, num_identities=p, num_instances=k))


@pytest.fixture(scope="module")
def model():
    """One small mmga model for the compile and call tests (a ResNet50 build is the slow part)."""
    from keras_mmga.models import MMGA

    return MMGA(3, variant="mmga", input_shape=(64, 32, 3), backbone_weights=None)


def test_zero_loss_weights_warn_at_compile(model):
    for setting, message in [
        ("triplet_weight", "no triplet loss"),
        ("attention_weight", "no mask supervision"),
        ("part_attention_weight", "part maps get no mask supervision"),
    ]:
        with pytest.warns(UserWarning, match=message):
            model.compile(**{setting: 0.0})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.compile()  # the recipe: no warning


def test_masks_that_cannot_be_targets(tmp_path):
    samples = _tree(
        tmp_path,
        mask=lambda pid, j, label: (
            cv2.resize(label, (32, 32))
            if (pid, j) == (1, 0)
            else (np.zeros_like(label) if (pid, j) == (2, 1) else label)
        ),
    )
    with pytest.raises(ValueError, match=r"is 32x32 pixels \(WxH\) but its image .* is 32x64"):
        make_train_dataset(samples, **_kwargs(tmp_path))
    with pytest.warns(UserWarning, match="2 of 6 images have no usable mask"):
        data = make_train_dataset(samples, **_kwargs(tmp_path, missing_masks="ignore"))
    assert data.num_classes == 3
    # A mask scaled with its image (same shape, half the pixels) is the same target.
    scaled = _tree(
        tmp_path / "s", mask=lambda pid, j, label: cv2.resize(label, (16, 32), interpolation=cv2.INTER_NEAREST)
    )
    make_train_dataset(scaled, **_kwargs(tmp_path / "s"))
    # One all-background mask: refused under "error".
    empty = _tree(tmp_path / "e", mask=lambda pid, j, label: np.zeros_like(label) if pid == 0 and j == 0 else label)
    with pytest.raises(ValueError, match="is all background"):
        make_train_dataset(empty, **_kwargs(tmp_path / "e"))


def test_no_mask_at_all_warns_and_masks_for_an_unsupervised_variant_warn(tmp_path):
    samples = _tree(tmp_path)
    with pytest.warns(UserWarning, match="every mask weight is 0"):
        make_train_dataset(samples, **_kwargs(tmp_path, mask_root=None, missing_masks="ignore"))
    with pytest.warns(UserWarning, match="trains without masks"):
        TrainConfig(str(tmp_path), str(tmp_path / "o"), variant="baseline", mask_root=str(tmp_path)).validate()


def test_test_split_samples_and_sparse_pids_are_refused(tmp_path):
    query = _tree(tmp_path, folder="query")
    with pytest.raises(ValueError, match=r"from the test split .* \.train"):
        make_train_dataset(query, **_kwargs(tmp_path))
    train = _tree(tmp_path / "t")
    sparse = [(path, pid * 2, cam) for path, pid, cam in train]  # ids 0, 2, 4
    with pytest.raises(ValueError, match="3 identities with ids up to 4"):
        make_train_dataset(sparse, **_kwargs(tmp_path / "t"))


def test_model_call_at_the_wrong_size_names_the_expected_size(model):
    with pytest.raises(ValueError, match="x has images of 128×64 but the model takes 64×32") as info:
        model(np.zeros((1, 128, 64, 3), "float32"))
    assert "Exception encountered" not in str(info.value)
    with pytest.raises(ValueError, match="takes 64×32"):
        model.backbone(np.zeros((1, 128, 64, 3), "float32"))
    assert model(np.zeros((2, 64, 32, 3), "float32")).shape == (2, model.feature_dim)
