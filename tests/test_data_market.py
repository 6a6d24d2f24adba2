import os

import cv2
import numpy as np
import pytest

from keras_mmga.data import DukeMTMCreID, Market1501, ReIDDataset, load_dataset

MARKET = {
    "bounding_box_train": [
        "0002_c1s1_000451_03.jpg",
        "0002_c2s1_000301_01.jpg",
        "0007_c3s3_077419_03.jpg",
        "0007_c6s3_077469_01.jpg",
        "0010_c1s1_000001_00.jpg",
    ],
    "bounding_box_test": [
        "0000_c1s1_000151_01.jpg",
        "-1_c1s1_000401_03.jpg",
        "0003_c2s1_000476_04.jpg",
        "0003_c1s1_000551_02.jpg",
        "0005_c5s2_010001_01.jpg",
    ],
    "query": ["0003_c1s1_000576_01.jpg", "0005_c4s2_009951_01.jpg"],
}
DUKE = {
    "bounding_box_train": ["0001_c2_f0046182.jpg", "0001_c5_f0051341.jpg", "0007_c7_f0090014.jpg"],
    "bounding_box_test": ["0002_c1_f0044158.jpg", "0002_c8_f0066471.jpg"],
    "query": ["0002_c5_f0051400.jpg"],
}


def _write_tree(root, layout):
    image = np.full((16, 8, 3), 128, np.uint8)
    for split, names in layout.items():
        os.makedirs(root / split, exist_ok=True)
        for name in names:
            cv2.imwrite(str(root / split / name), image)
    return root


def test_market_parsing_junk_distractors_and_relabelling(tmp_path):
    ds = Market1501(_write_tree(tmp_path, MARKET), verbose=False)
    # Train pids 2, 7, 10 -> 0, 1, 2 in sorted order; cameras 0-based.
    assert sorted((os.path.basename(p), pid, cam) for p, pid, cam in ds.train) == [
        ("0002_c1s1_000451_03.jpg", 0, 0),
        ("0002_c2s1_000301_01.jpg", 0, 1),
        ("0007_c3s3_077419_03.jpg", 1, 2),
        ("0007_c6s3_077469_01.jpg", 1, 5),
        ("0010_c1s1_000001_00.jpg", 2, 0),
    ]
    assert ds.num_train_pids == 3 and ds.num_train_cams == 4
    gallery_pids = sorted(pid for _, pid, _ in ds.gallery)
    assert gallery_pids == [0, 3, 3, 5]  # junk (-1) dropped, distractor (0) kept, ids not relabelled
    assert sorted((pid, cam) for _, pid, cam in ds.query) == [(3, 0), (5, 3)]
    table = ds.summary()
    assert "train" in table and "|     3 |        5 |" in table


def test_duke_parsing(tmp_path):
    ds = DukeMTMCreID(_write_tree(tmp_path, DUKE), verbose=False)
    assert sorted((pid, cam) for _, pid, cam in ds.train) == [(0, 1), (0, 4), (1, 6)]
    assert sorted((pid, cam) for _, pid, cam in ds.gallery) == [(2, 0), (2, 7)]
    assert load_dataset(tmp_path, "DukeMTMC-reID", verbose=False).num_train_pids == 2


def test_wrong_layout_names_the_path_and_the_missing_folder(tmp_path):
    os.makedirs(tmp_path / "bounding_box_train")
    with pytest.raises(FileNotFoundError, match="query") as err:
        Market1501(tmp_path, verbose=False)
    assert str(tmp_path) in str(err.value)
    with pytest.raises(FileNotFoundError, match="does not exist") as err:
        Market1501(tmp_path / "nope", verbose=False)
    assert str(tmp_path / "nope") in str(err.value)


def test_root_may_hold_the_official_folder(tmp_path):
    _write_tree(tmp_path / "Market-1501-v15.09.15", MARKET)
    ds = Market1501(tmp_path, verbose=False)
    assert ds.root == str(tmp_path / "Market-1501-v15.09.15")
    assert (ds.num_train_pids, ds.num_query_pids, ds.num_gallery_pids) == (3, 2, 3)
    assert (len(ds.train), len(ds.query), len(ds.gallery)) == (5, 2, 4)


def test_summary_is_printed_when_verbose(tmp_path, capsys):
    Market1501(_write_tree(tmp_path, MARKET), verbose=True)
    out = capsys.readouterr().out
    assert "Market1501" in out and "# ids" in out and "gallery" in out


def test_readers_are_quiet_by_default(tmp_path, capsys):
    root = _write_tree(tmp_path, MARKET)
    market = Market1501(root)
    load_dataset(root)
    assert capsys.readouterr().out == ""
    assert "# ids" in market.summary()  # the table on demand


def test_camera_zero_is_an_error_naming_the_file(tmp_path):
    layout = {k: list(v) for k, v in MARKET.items()}
    layout["bounding_box_train"].append("0004_c0s1_000001_00.jpg")
    _write_tree(tmp_path, layout)
    with pytest.raises(ValueError, match="0004_c0s1_000001_00.jpg"):
        Market1501(tmp_path, verbose=False)


def test_unparseable_name_and_empty_split_name_the_path(tmp_path):
    layout = {k: list(v) for k, v in MARKET.items()}
    layout["query"].append("person_1.jpg")
    _write_tree(tmp_path, layout)
    with pytest.raises(ValueError, match="person_1.jpg"):
        Market1501(tmp_path, verbose=False)
    os.remove(tmp_path / "query" / "person_1.jpg")
    for name in MARKET["query"]:
        os.remove(tmp_path / "query" / name)
    with pytest.raises(ValueError, match="no images found in .*query"):
        Market1501(tmp_path, verbose=False)


def test_custom_dataset_relabels_train():
    ds = ReIDDataset([("a.jpg", 40, 0), ("b.jpg", 12, 1), ("c.jpg", 40, 2)], [("q.jpg", 5, 0)], [("g.jpg", 5, 1)])
    assert [pid for _, pid, _ in ds.train] == [1, 0, 1]
    assert ds.query == [("q.jpg", 5, 0)]
    assert ds.num_train_pids == 2 and ds.num_train_cams == 3


def test_custom_dataset_rejects_malformed_samples():
    with pytest.raises(ValueError, match="train sample 1"):
        ReIDDataset([("a.jpg", 1, 0), ("b.jpg", 2)], [], [])


def test_custom_dataset_rejects_fractional_ids():
    # int(1.5) would silently merge identities 1 and 1.5.
    with pytest.raises(ValueError, match=r"query sample 0 is .*integer pid and camid"):
        ReIDDataset([("a.jpg", 1, 0)], [("q.jpg", 1.5, 0)], [("g.jpg", 5, 1)])
    assert ReIDDataset([("a.jpg", 1.0, 0)], [], []).train == [("a.jpg", 0, 0)]
