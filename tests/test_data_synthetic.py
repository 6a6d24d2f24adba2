import os
from collections import defaultdict

import cv2
import numpy as np

from keras_mmga.data import Market1501, synthetic


def test_writer_layout_counts_cameras_and_masks(tmp_path):
    images_root, masks_root = synthetic.write_dataset(tmp_path, num_train_ids=6, num_test_ids=5, seed=1,
                                                      num_distractors=3, num_junk=2)
    names = {s: sorted(os.listdir(os.path.join(images_root, s))) for s in ("bounding_box_train", "bounding_box_test", "query")}
    ds = Market1501(images_root, verbose=False)
    assert ds.num_train_pids == 6
    assert len({pid for _, pid, _ in ds.query}) == 5
    assert sum(n.startswith("-1_") for n in names["bounding_box_test"]) == 2
    assert sum(pid == 0 for _, pid, _ in ds.gallery) == 3
    train_ids = {n[:4] for n in names["bounding_box_train"]}
    test_ids = {n[:4] for n in names["query"]}
    assert not train_ids & test_ids
    for split in ("bounding_box_train", "query"):
        per_id = defaultdict(set)
        for n in names[split] if split == "bounding_box_train" else names["query"] + names["bounding_box_test"]:
            if not n.startswith(("0000", "-1")):
                per_id[n[:4]].add(n.split("_")[1][:2])
        assert all(len(c) >= 2 for c in per_id.values())
    # Every query identity has a gallery image in another camera.
    gallery = {(pid, cam) for _, pid, cam in ds.gallery}
    for _, pid, cam in ds.query:
        assert any(p == pid and c != cam for p, c in gallery)
    # A mask for every image, non-empty for people.
    for split, files in names.items():
        for n in files:
            mask = cv2.imread(os.path.join(masks_root, split, n.replace(".jpg", ".png")), cv2.IMREAD_UNCHANGED)
            assert mask is not None and mask.shape == (128, 64) and mask.max() <= 19
            if not n.startswith("-1_"):
                assert (mask > 0).sum() > 200


def test_writer_is_deterministic(tmp_path):
    a = synthetic.write_dataset(tmp_path / "a", 2, 2, seed=4, num_distractors=1, num_junk=1)[0]
    b = synthetic.write_dataset(tmp_path / "b", 2, 2, seed=4, num_distractors=1, num_junk=1)[0]
    files = sorted(os.listdir(os.path.join(a, "query")))
    assert files == sorted(os.listdir(os.path.join(b, "query")))
    np.testing.assert_array_equal(cv2.imread(os.path.join(a, "query", files[0])), cv2.imread(os.path.join(b, "query", files[0])))


def test_script_writes_the_dataset(tmp_path, monkeypatch, capsys):
    import runpy
    import sys

    script = os.path.join(os.path.dirname(__file__), "..", "scripts", "make_synthetic.py")
    monkeypatch.setattr(sys, "argv", ["make_synthetic.py", str(tmp_path), "--train-ids", "2", "--test-ids", "2",
                                      "--distractors", "1", "--junk", "1"])
    runpy.run_path(script, run_name="__main__")
    assert "images" in capsys.readouterr().out
    ds = Market1501(os.path.join(tmp_path, "images"), verbose=False)
    assert ds.num_train_pids == 2 and {pid for _, pid, _ in ds.gallery} >= {0}
