import os
from collections import defaultdict

import cv2
import numpy as np
import pytest

from keras_mmga.data import Market1501, synthetic


def test_writer_layout_counts_cameras_and_masks(tmp_path):
    images_root, masks_root = synthetic.write_dataset(
        tmp_path, num_train_ids=6, num_test_ids=5, seed=1, num_distractors=3, num_junk=2
    )
    names = {
        s: sorted(os.listdir(os.path.join(images_root, s)))
        for s in ("bounding_box_train", "bounding_box_test", "query")
    }
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
    np.testing.assert_array_equal(
        cv2.imread(os.path.join(a, "query", files[0])), cv2.imread(os.path.join(b, "query", files[0]))
    )


def test_script_writes_the_dataset(tmp_path, monkeypatch, capsys):
    import runpy
    import sys

    script = os.path.join(os.path.dirname(__file__), "..", "scripts", "make_synthetic.py")
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "make_synthetic.py",
            "--output",
            str(tmp_path),
            "--train-ids",
            "2",
            "--test-ids",
            "2",
            "--distractors",
            "1",
            "--junk",
            "1",
        ],
    )
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(script, run_name="__main__")
    assert exit_.value.code == 0
    assert "images" in capsys.readouterr().out
    ds = Market1501(os.path.join(tmp_path, "images"), verbose=False)
    assert ds.num_train_pids == 2 and {pid for _, pid, _ in ds.gallery} >= {0}


def _train_pids(images_root):
    return sorted({name.split("_")[0] for name in os.listdir(os.path.join(images_root, "bounding_box_train"))})


def test_writing_into_a_dataset_of_other_settings_is_refused_or_replaced(tmp_path):
    # 6 identities, then 3 with another seed into the same folder: without the
    # check, the 6 old identities stayed, mixed with new people under ids 1..3.
    images, _ = synthetic.write_dataset(tmp_path, 6, 2, seed=0, num_distractors=1, num_junk=1)
    assert len(_train_pids(images)) == 6
    first = sorted(os.listdir(os.path.join(images, "query")))
    with pytest.raises(
        ValueError,
        match=r"other settings \(num_train_ids: 6 there, 3 now; seed: 0 there, 1 now\)"
        r".*overwrite=True",
    ):
        synthetic.write_dataset(tmp_path, 3, 2, seed=1, num_distractors=1, num_junk=1)
    assert len(_train_pids(images)) == 6  # nothing was written
    # The same settings again: the dataset there is the one asked for.
    assert synthetic.write_dataset(tmp_path, 6, 2, seed=0, num_distractors=1, num_junk=1)[0] == images
    (tmp_path / "notes.txt").write_text("kept")
    synthetic.write_dataset(tmp_path, 3, 2, seed=1, num_distractors=1, num_junk=1, overwrite=True)
    assert _train_pids(images) == ["0001", "0002", "0003"]
    assert sorted(os.listdir(os.path.join(images, "query"))) != first
    assert len(os.listdir(os.path.join(tmp_path, "masks", "bounding_box_train"))) == len(
        os.listdir(os.path.join(images, "bounding_box_train"))
    )
    assert (tmp_path / "notes.txt").read_text() == "kept"
    # Files without a marker (another tool, an interrupted write) are not written into either.
    other = tmp_path / "other"
    (other / "images" / "query").mkdir(parents=True)
    (other / "images" / "query" / "0001_c1s1_000001_01.jpg").write_bytes(b"x")
    with pytest.raises(ValueError, match="without a finished write"):
        synthetic.write_dataset(other, 2, 2)


def test_writer_arguments_are_checked():
    for kwargs, message in (
        (dict(num_train_ids=0), "must be ≥ 1"),
        (dict(num_test_ids=2.5), "must be an int"),
        (dict(num_junk=-1), "must be ≥ 0"),
        (dict(images_per_camera=(3, 2)), "min ≤ max"),
    ):
        with pytest.raises(ValueError, match=message):
            synthetic.write_dataset("unused", **kwargs)


def test_command_bad_arguments_and_existing_folder_give_one_line_and_exit_2(tmp_path, capsys):
    from keras_mmga.cli import main

    base = ["synthetic", "--output", str(tmp_path), "--test-ids", "2", "--distractors", "1", "--junk", "1"]
    assert main(base + ["--train-ids", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert main(base + ["--train-ids", "2"]) == 0
    assert main(base + ["--train-ids", "3"]) == 2
    assert "num_train_ids: 2 there, 3 now" in capsys.readouterr().err
    assert main(base + ["--train-ids", "3", "--overwrite"]) == 0
    assert len(_train_pids(tmp_path / "images")) == 3
    # argparse: a non-integer is a usage error, one line and exit 2 too
    assert main(base + ["--train-ids", "many"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: argument --train-ids: invalid int value: 'many'") and err.count("\n") == 1
