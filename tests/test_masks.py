"""Masks from images: the pose-model cache, the parser against ground truth, the folder writer and its CLI.

The model is fetched once per test session (pip download of the mediapipe
0.10.21 wheel) into a session cache folder; every other test reuses it.
"""

import os
import shutil
import subprocess
import zipfile

import cv2
import numpy as np
import pytest

from keras_mmga.data.masks import channel_weights, check_grouping, group_label_map, load_targets, read_absence
from keras_mmga.data.synthetic import write_dataset
from keras_mmga.image_io import sha256
from keras_mmga.masks import pose_model as pm
from keras_mmga.masks.parser import (
    PART_LABELS,
    BodyPartParser,
    _closer_to,
    _run_extent,
    _run_width,
    _shared_colours,
    _trunk_width,
)
from keras_mmga.masks.writer import REPORT_NAME, read_report, write_masks


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory):
    """A cache folder holding the fetched model (the session's one fetch)."""
    cache = tmp_path_factory.mktemp("pose_cache")
    path = pm.fetch_model(cache)
    assert os.path.getsize(path) == pm.MODEL_SIZE and sha256(path) == pm.MODEL_SHA256
    return str(cache)


@pytest.fixture(scope="session")
def model_path(model_cache):
    return os.path.join(model_cache, pm.MODEL_FILE)


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory):
    """A small synthetic set (seed 3, not the seed the parser was tuned on) plus an empty and a broken image."""
    root = tmp_path_factory.mktemp("synthetic")
    images, masks = write_dataset(root, num_train_ids=5, num_test_ids=2, seed=3, num_distractors=0, num_junk=0)
    background = np.tile(np.linspace(90, 160, 64, dtype=np.uint8)[None, :, None], (128, 1, 3))
    cv2.imwrite(os.path.join(images, "bounding_box_test", "empty_background.jpg"), background)
    with open(os.path.join(images, "query", "broken.jpg"), "wb") as f:
        f.write(b"\xff\xd8 not really a jpeg")
    return images, masks


@pytest.fixture(scope="session")
def generated(synthetic, model_path, tmp_path_factory):
    images, _ = synthetic
    out = str(tmp_path_factory.mktemp("generated"))
    summary = write_masks(images, out, pose_model=model_path, workers=1, verbose=False)
    return out, summary


def _fake_pip(model_file, calls):
    """A stand-in for `pip download` that writes a wheel holding `model_file` (no network)."""

    def run(cmd, **kwargs):
        calls.append(cmd)
        dest = cmd[cmd.index("-d") + 1]
        with zipfile.ZipFile(os.path.join(dest, "mediapipe-0.10.21-cp312-cp312-manylinux_2_28_x86_64.whl"), "w") as z:
            z.write(model_file, pm.WHEEL_MEMBER)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    return run


# --- the model cache -------------------------------------------------------


def test_cached_model_is_reused_without_fetching(model_cache, monkeypatch):
    calls = []
    monkeypatch.setattr(pm.subprocess, "run", lambda cmd, **kw: calls.append(cmd))
    assert pm.resolve_pose_model(cache_dir=model_cache) == os.path.join(model_cache, pm.MODEL_FILE)
    assert calls == []


def test_cache_dir_from_argument_environment_or_home(tmp_path, monkeypatch):
    monkeypatch.setenv(pm.CACHE_ENV, str(tmp_path / "env"))
    assert pm.default_cache_dir(tmp_path / "arg") == str(tmp_path / "arg")
    assert pm.default_cache_dir() == str(tmp_path / "env")
    monkeypatch.delenv(pm.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert pm.default_cache_dir() == str(tmp_path / "xdg" / "keras_mmga")


def test_corrupt_cached_model_is_detected_and_replaced(model_path, tmp_path, monkeypatch):
    cached = tmp_path / pm.MODEL_FILE
    data = bytearray(open(model_path, "rb").read())
    data[1000] ^= 0xFF  # one flipped byte: same size, other hash
    cached.write_bytes(bytes(data))
    calls, notes = [], []
    monkeypatch.setattr(pm.subprocess, "run", _fake_pip(model_path, calls))
    path = pm.resolve_pose_model(cache_dir=tmp_path, log=notes.append)
    assert len(calls) == 1 and "corrupt" in notes[0]
    assert sha256(path) == pm.MODEL_SHA256
    assert [n for n in os.listdir(tmp_path)] == [pm.MODEL_FILE]  # no temporary wheel left


def test_unfetchable_model_is_one_error_listing_the_ways(tmp_path, monkeypatch):
    def no_network(cmd, **kwargs):
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found for mediapipe==0.10.21")

    monkeypatch.setattr(pm.subprocess, "run", no_network)
    with pytest.raises(pm.PoseModelError) as err:
        pm.resolve_pose_model(cache_dir=tmp_path)
    text = str(err.value)
    assert "No matching distribution" in text and "--pose-model" in text and "pip download mediapipe==0.10.21" in text
    assert str(tmp_path) in text and os.listdir(tmp_path) == []


def test_wrong_pose_model_file_gives_a_clear_error(tmp_path, model_cache):
    text_file = tmp_path / "model.tflite"
    text_file.write_text("definitely not a model")
    with pytest.raises(pm.PoseModelError, match="not a TensorFlow Lite model"):
        pm.PoseModel(text_file, cache_dir=model_cache)
    fake = tmp_path / "fake.tflite"
    fake.write_bytes(b"\x00\x00\x00\x00TFL3" + b"\x00" * 64)
    with pytest.raises(pm.PoseModelError, match="Cannot open pose model"):
        pm.PoseModel(fake, cache_dir=model_cache)
    with pytest.raises(pm.PoseModelError, match="no such file"):
        pm.PoseModel(tmp_path / "missing.tflite", cache_dir=model_cache)


def test_user_wheel_is_accepted(model_path, tmp_path):
    wheel = tmp_path / "mediapipe-0.10.21-cp312-cp312-manylinux_2_28_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.write(model_path, pm.WHEEL_MEMBER)
    path = pm.resolve_pose_model(wheel, cache_dir=tmp_path / "cache")
    assert pm.is_valid_model(path)


# --- the parser ------------------------------------------------------------


def _iou(a, b):
    union = (a | b).sum()
    return (a & b).sum() / union if union else 1.0


def test_generated_masks_reach_the_iou_floors(synthetic, generated):
    images, gt_root = synthetic
    out, summary = generated
    scores = []
    for split in ("bounding_box_train", "bounding_box_test", "query"):
        for name in sorted(os.listdir(os.path.join(gt_root, split))):
            gt = group_label_map(cv2.imread(os.path.join(gt_root, split, name), cv2.IMREAD_UNCHANGED)) > 0
            mask_file = os.path.join(out, split, name)
            made = cv2.imread(mask_file, cv2.IMREAD_UNCHANGED) if os.path.exists(mask_file) else None
            pred = group_label_map(made) > 0 if made is not None else np.zeros_like(gt)
            scores.append([_iou(pred[..., c], gt[..., c]) for c in range(3)])
    median = np.median(np.array(scores), axis=0)
    # Goals of the issue (median whole / upper / bottom), on a seed the parser was not tuned on.
    assert median[0] >= 0.85 and median[1] >= 0.80 and median[2] >= 0.75, median


def test_waistline_is_where_the_clothes_change(model_path):
    # A hand-drawn figure: red shirt down to row 60, blue trousers below; the
    # hip landmarks sit lower, at row 68 (joints, below the waistband).
    image, body = _dressed_figure(shirt=(30, 30, 220), trousers=(200, 60, 20), shirt_top=30)
    lm = _figure_landmarks(arms_x=(47, 17))  # arms spread outside the drawn body
    seg = np.where(body, 8.0, -8.0).astype(np.float32)
    # skeleton_threshold=0: no skeleton fill, so the labels stay inside the drawn body (the arms'
    # landmarks lie outside it; the fill for dark clothes would add their bones' cores).
    result = BodyPartParser(model_path, skeleton_threshold=0.0).parse_outputs(image, lm, 0.99, seg)
    assert result.person and result.waist_y == 60 and result.absent == ()
    groups = group_label_map(result.label_map) > 0
    assert groups[30:60, 26:38, 1].all() and not groups[30:60, 26:38, 2].any()  # shirt: upper
    assert groups[62:110, 24:40, 2].all()  # trousers, shins: bottom
    assert (result.label_map[~body] == 0).all() and set(np.unique(result.label_map)) <= {0, *PART_LABELS}


def _pose(face, ears, shoulders, elbows, wrists, hands, hips, knees, ankles, heels, toes, eyes_y=None):
    """Landmarks (39, 5), all visible and present (the parser draws only seen ones): `face` (x, y) for the
    11 face points (the eyes at `eyes_y` if given), every joint else `(x_left, x_right, y)` for the person's
    left and right side."""
    lm = np.zeros((39, 5), np.float32)
    lm[:, 3:5] = 5.0
    lm[:11, :2] = face
    if eyes_y is not None:
        lm[[2, 5], 1] = eyes_y
    joints = (ears, shoulders, elbows, wrists, hands, hips, knees, ankles, heels, toes)
    sides = ((7, 8), (11, 12), (13, 14), (15, 16), ((17, 19, 21), (18, 20, 22)))
    sides += ((23, 24), (25, 26), (27, 28), (29, 30), (31, 32))
    for (left, right), (x_left, x_right, y) in zip(sides, joints):
        lm[left, :2], lm[right, :2] = (x_left, y), (x_right, y)
    return lm


def _figure_landmarks(arms_x=(42, 22)):
    """Landmarks of the hand-drawn figure (128x64). `arms_x`: the x of the left and right elbows, wrists and
    hands."""
    left, right = arms_x
    return _pose(
        face=(32, 20),
        eyes_y=18,
        ears=(28, 36, 20),
        shoulders=(40, 24, 32),
        elbows=(left, right, 45),
        wrists=(left, right, 56),
        hands=(left, right, 59),
        hips=(36, 28, 68),
        knees=(36, 28, 92),
        ankles=(36, 28, 114),
        heels=(36, 28, 118),
        toes=(38, 26, 119),
    )


def _dressed_figure(shirt=(60, 60, 60), trousers=(140, 70, 20), face=(110, 150, 200), background=200, shirt_top=26):
    """The hand-drawn figure (128x64, BGR) and its body mask: head, shirt from `shirt_top` to row 60, trousers."""
    image = np.full((128, 64, 3), background, np.uint8)
    body = np.zeros((128, 64), bool)
    body[14:26, 26:38] = True
    body[shirt_top:60, 20:44] = True
    body[60:120, 22:42] = True
    image[14:26, 26:38] = face
    image[shirt_top:60, 20:44] = shirt
    image[60:120, 22:42] = trousers
    return image, body


def test_parts_out_of_the_frame_get_no_label_and_are_reported_absent(model_path):
    # The figure cut at row 64 (waist-up: hips at 68 and everything below outside the crop),
    # and cut below the chin (rows 26..127: the face landmarks above the top edge).
    image, body = _dressed_figure()
    parser = BodyPartParser(model_path, skeleton_threshold=0.0)
    lm = _figure_landmarks()
    seg = np.where(body, 8.0, -8.0).astype(np.float32)
    full = parser.parse_outputs(image, lm, 0.99, seg)
    assert full.person and full.absent == ()  # control: everything in view is drawn
    waist = parser.parse_outputs(image[:64], lm, 0.99, seg[:64])
    assert waist.person
    assert not np.isin(waist.label_map, (9, 12, 16, 17, 18, 19)).any()  # no trousers, legs or shoes
    assert {9, 16, 17, 18, 19} <= set(waist.absent) and 5 not in waist.absent
    assert (waist.label_map[body[:64]] > 0).all()  # the in-view body is still whole
    cut = lm.copy()
    cut[:, 1] -= 26
    chin = parser.parse_outputs(image[26:], cut, 0.99, seg[26:])
    assert chin.person and not np.isin(chin.label_map, (2, 13)).any() and {2, 13} <= set(chin.absent)


def test_squeezed_pose_in_a_cut_crop_needs_pixel_evidence_for_legs_and_head(model_path):
    # The pose model fits a whole body into a crop cut at the waist: hips, knees and ankles land inside
    # the 64-row crop, seen. The pixels show no trousers (a striped shirt down to the bottom edge), so
    # no legs are drawn; the same landmarks with trousers in view (a clear change of clothing at the
    # waistline) or with the whole leg in view get them.
    striped = np.full((64, 64, 3), 200, np.uint8)
    body = np.zeros((64, 64), bool)
    body[6:12, 27:37] = True  # head
    body[12:64, 18:46] = True
    striped[6:12, 27:37] = (110, 150, 200)
    striped[12:64, 18:46] = (40, 40, 160)
    for row in range(14, 64, 6):
        striped[row : row + 3, 18:46] = (230, 230, 230)  # stripes: a colour change every 3 rows
    lm = _pose(
        face=(32, 9),
        ears=(29, 35, 9),
        shoulders=(38, 26, 14),
        elbows=(44, 20, 26),
        wrists=(44, 20, 36),
        hands=(44, 20, 38),
        hips=(37, 27, 34),  # squeezed in
        knees=(37, 27, 46),
        ankles=(37, 27, 56),  # 22 rows below the hips, a torso is 20
        heels=(37, 27, 70),  # feet below the frame
        toes=(37, 27, 70),
    )
    seg = np.where(body, 8.0, -8.0).astype(np.float32)
    parser = BodyPartParser(model_path, skeleton_threshold=0.0, min_leg_seen=0.5)
    bottom = (9, 12, 16, 17, 18, 19)
    # Knees and ankles seen, but the ankles 16 rows below the hips of a 20-row torso: a squeezed guess.
    short = lm.copy()
    short[[27, 28], 1] = 50
    squeezed = parser.parse_outputs(striped, short, 0.99, seg)
    assert squeezed.person and not np.isin(squeezed.label_map, bottom).any()
    assert {9, 16, 17} <= set(squeezed.absent)
    assert (squeezed.label_map[body] > 0).all()  # the body is still whole, as upper clothes
    # Trousers in view below the waistline: a clear change of clothing, the legs are drawn.
    dressed = striped.copy()
    dressed[36:64, 18:46] = (140, 70, 20)
    assert np.isin(parser.parse_outputs(dressed, short, 0.99, seg).label_map, bottom).any()
    # Forearms held in front of a plain shirt from row 36 (over 16 of its 28 columns): the mean colour changes
    # and most colours below are not worn above, but all the shirt's colours go on below: no trousers.
    arms = striped.copy()
    arms[12:64, 18:46] = (40, 40, 160)
    arms[36:64, 21:29] = arms[36:64, 35:43] = (110, 150, 200)
    in_front = parser.parse_outputs(arms, short, 0.99, seg)
    assert not np.isin(in_front.label_map, bottom).any() and {9, 16, 17} <= set(in_front.absent)
    # A pose squeezed harder (hips 8 rows below the shoulders) on a two-tone top that changes colour 10 rows
    # below the shoulders of a body 28 columns wide: under 0.4 chest widths, inside the top, not a waistline.
    hard = short.copy()
    hard[[23, 24], 1], hard[[25, 26], 1], hard[[27, 28], 1] = 22, 30, 36
    two_tone = striped.copy()
    two_tone[12:24, 18:46], two_tone[24:64, 18:46] = (40, 40, 160), (140, 70, 20)
    in_top = parser.parse_outputs(two_tone, hard, 0.99, seg)
    assert in_top.person and not np.isin(in_top.label_map, bottom).any() and 9 in in_top.absent
    # The whole leg seen, the ankle a torso length below the hip: drawn on the striped shirt too.
    assert np.isin(parser.parse_outputs(striped, lm, 0.99, seg).label_map, bottom).any()
    # The same landmarks on a body 40 columns wide (the stripes widened): shoulder to ankle is 42 rows, under
    # 1.3 body widths, so the legs are a squeezed guess, not a whole leg.
    wide, body_w = striped.copy(), body.copy()
    wide[12:64, 12:52] = striped[12:64, 20:21]
    body_w[12:64, 12:52] = True
    squat = parser.parse_outputs(wide, lm, 0.99, np.where(body_w, 8.0, -8.0).astype(np.float32))
    assert squat.person and not np.isin(squat.label_map, bottom).any() and {16, 17} <= set(squat.absent)
    # The same leg squeezed down to the bottom edge (ankles 2 rows above it, 0.1 torso length, feet
    # outside): no foot in view and no room for one, so not a whole leg; a heel seen inside makes it one.
    edge = lm.copy()
    edge[[25, 26], 1], edge[[27, 28], 1] = 49, 61
    at_edge = parser.parse_outputs(striped, edge, 0.99, seg)
    assert not np.isin(at_edge.label_map, bottom).any() and {16, 17} <= set(at_edge.absent)
    edge[29, 1] = 63
    assert np.isin(parser.parse_outputs(striped, edge, 0.99, seg).label_map, bottom).any()
    # The head: a crop cut below the chin whose face landmarks the model put on the collar (rows 2-6,
    # shirt-coloured) gets no head; the control with a face there gets one.
    collar = striped.copy()
    collar[:12, 18:46] = (40, 40, 160)
    body_c = body.copy()
    body_c[:12, 18:46] = True
    seg_c = np.where(body_c, 8.0, -8.0).astype(np.float32)
    on_collar = parser.parse_outputs(collar, lm, 0.99, seg_c)
    assert not np.isin(on_collar.label_map, (2, 13)).any() and {2, 13} <= set(on_collar.absent)
    with_face = parser.parse_outputs(striped, lm, 0.99, seg)
    assert np.isin(with_face.label_map, (2, 13)).any() and 13 not in with_face.absent
    # A crop cut below the shoulders whose segmentation the model rounded into a head (the head-shaped body
    # of `seg`, narrower than the chest, background beside it) while the pixels beside it are the shirt
    # up to the top edge: no head. With background there (`striped`, above) the head stays.
    rounded = parser.parse_outputs(collar, lm, 0.99, seg)
    assert not np.isin(rounded.label_map, (2, 13)).any() and {2, 13} <= set(rounded.absent)
    # The same over a busy background that also wears colours near the shirt's (a third of its pixels, the
    # rest random): by colour bins the pixels beside the "head" are as much background as shirt, but they are
    # nearer to the shirt: no head.
    busy = collar.copy()
    rng = np.random.RandomState(1)
    outside = ~body_c
    outside[:12, 18:46] = False  # the cut shirt at the top stays
    noise = rng.randint(0, 256, (int(outside.sum()), 3))
    noise[rng.rand(len(noise)) < 1 / 3] = (52, 50, 175)
    busy[outside] = noise
    on_busy = parser.parse_outputs(busy, lm, 0.99, seg)
    assert not np.isin(on_busy.label_map, (2, 13)).any() and {2, 13} <= set(on_busy.absent)
    # Face landmarks put on a skin-coloured patch of the chest (body over them: the real head above) get no
    # head there: the colours differ from the chest's, but a head has no body over it.
    on_chest = lm.copy()
    on_chest[:11, 1] += 20
    patch = striped.copy()
    patch[24:35, 27:38] = (110, 150, 200)
    lab = cv2.cvtColor(patch, cv2.COLOR_BGR2LAB).astype(np.float64)
    assert _shared_colours(lab[36:44, 20:44].reshape(-1, 3), lab[26:33, 29:36].reshape(-1, 3)) < 0.5
    assert 13 in parser.parse_outputs(patch, on_chest, 0.99, seg).absent


def test_portrait_with_the_skeleton_squeezed_above_the_chest_gets_no_legs(model_path):
    # A head-and-shoulders portrait (64x64): head rows 4-19, neck 20-25 (8 wide), chest 26-63 (52 wide).
    # The pose model squeezes a whole body into it: shoulders at the chin (row 14), hips at row 30, knees,
    # ankles and heels inside the crop, all seen. The chest point of the skeleton (35 % down the torso)
    # lands on the neck; the trunk's widest run (52) is the real chest, and 42 rows from the shoulders to
    # the ankles are under 1.3 of it: no legs. One colour for the clothes: no waistline either.
    image = np.full((64, 64, 3), 200, np.uint8)
    body = np.zeros((64, 64), bool)
    body[4:20, 24:40] = body[20:26, 28:36] = body[26:64, 6:58] = True
    image[4:26][body[4:26]] = (110, 150, 200)
    image[26:64, 6:58] = (90, 40, 30)
    lm = _pose(
        face=(32, 10),
        ears=(27, 37, 11),
        shoulders=(38, 26, 14),
        elbows=(42, 22, 24),
        wrists=(42, 22, 32),
        hands=(42, 22, 34),
        hips=(36, 28, 30),
        knees=(36, 28, 44),
        ankles=(36, 28, 56),
        heels=(36, 28, 61),
        toes=(38, 26, 62),
    )
    seg = np.where(body, 8.0, -8.0).astype(np.float32)
    parser = BodyPartParser(model_path, skeleton_threshold=0.0)
    assert _run_width(body, (32, 14 + 0.35 * 16)) == 8  # the skeleton's chest point is on the neck
    result = parser.parse_outputs(image, lm, 0.99, seg)
    assert result.person and not np.isin(result.label_map, (9, 12, 16, 17, 18, 19)).any()
    assert {9, 16, 17, 18, 19} <= set(result.absent)
    assert (result.label_map[body] > 0).all()


def test_skeleton_fill_closes_a_dark_torso_that_the_segmentation_misses(model_path):
    # Dark clothes on a dark background: the segmentation is unsure (probability 0.27) inside
    # the torso; the skeleton fill makes it body, the plain threshold leaves a hole.
    h, w = 128, 64
    image, body = _dressed_figure(shirt=(30, 30, 30), trousers=(30, 30, 30), face=(30, 30, 30), background=30)
    seg = np.where(body, 8.0, -8.0).astype(np.float32)
    hole = np.zeros((h, w), bool)
    hole[36:56, 29:35] = True  # inside the torso between the shoulders and the hips (the skeleton's core)
    seg[hole] = -1.0
    lm = _figure_landmarks()
    plain = BodyPartParser(model_path, skeleton_threshold=0.0).parse_outputs(image, lm, 0.99, seg)
    filled = BodyPartParser(model_path).parse_outputs(image, lm, 0.99, seg)
    assert (plain.label_map[hole] == 0).all()
    assert (filled.label_map[hole] > 0).all()
    far = np.ones((h, w), bool)
    far[8:124, 14:50] = False  # well away from every bone: the fill adds nothing there
    assert (filled.label_map[far] == 0).all()


# --- the folder writer -----------------------------------------------------


def test_layout_lip_ids_and_the_existing_reader(synthetic, generated):
    images, _ = synthetic
    out, summary = generated
    written = []
    for folder, _, files in os.walk(out):
        for name in files:
            if name.endswith(".png"):
                rel = os.path.relpath(os.path.join(folder, name), out)
                written.append(rel)
                assert os.path.isfile(os.path.join(images, os.path.splitext(rel)[0] + ".jpg")), rel
                label_map = cv2.imread(os.path.join(out, rel), cv2.IMREAD_UNCHANGED)
                assert label_map.ndim == 2 and label_map.dtype == np.uint8
                assert set(np.unique(label_map)) <= {0, *PART_LABELS}
    assert len(written) == summary["written"] > 0
    paths = [os.path.join(images, os.path.splitext(r)[0] + ".jpg") for r in written]
    targets, weights = load_targets(paths, images, out, (8, 4), mode="parts", mask_format="lip")
    # Masks with parts out of view have sidecars: one weight per channel, 0 for those parts only.
    groups = check_grouping("upper", None)
    expected = np.stack([channel_weights(read_absence(os.path.join(out, r)), groups) for r in written])
    assert targets.shape == (len(paths), 8, 4, 3) and weights.shape == (len(paths), 3)
    np.testing.assert_array_equal(weights, expected)
    assert (weights[:, 0] == 1).all()
    # The default grouping: whole = upper ∪ bottom, parts disjoint.
    full = group_label_map(cv2.imread(os.path.join(out, written[0]), cv2.IMREAD_UNCHANGED))
    np.testing.assert_array_equal(full[..., 0], np.maximum(full[..., 1], full[..., 2]))
    assert not (full[..., 1] * full[..., 2]).any()


def test_report_lists_no_person_and_unreadable_and_the_run_goes_on(synthetic, generated):
    images, _ = synthetic
    out, summary = generated
    rows = {r["image"]: r["reason"] for r in read_report(os.path.join(out, REPORT_NAME))}
    assert rows[os.path.join("query", "broken.jpg")] == "unreadable"
    assert rows[os.path.join("bounding_box_test", "empty_background.jpg")] == "no_person"
    assert not os.path.exists(os.path.join(out, "bounding_box_test", "empty_background.png"))
    assert summary["unreadable"] == 1 and summary["no_person"] >= 1
    assert summary["written"] + summary["no_person"] + summary["unreadable"] == summary["images"]


def test_resume_keeps_masks_and_overwrite_remakes_them(synthetic, model_path, tmp_path):
    images, _ = synthetic
    subset = tmp_path / "images"
    shutil.copytree(os.path.join(images, "query"), subset / "query")
    out = tmp_path / "masks"
    # low_confidence above 1: every mask is listed, so the report's carry-over shows.
    first = write_masks(subset, out, pose_model=model_path, workers=2, verbose=False, low_confidence=1.01)
    masks = sorted(p for p in os.listdir(out / "query") if p.endswith(".png"))  # sidecars: .json
    assert first["written"] == len(masks) > 1
    kept, removed = out / "query" / masks[0], out / "query" / masks[1]
    os.utime(kept, (1, 1))
    content = kept.read_bytes()
    removed.unlink()
    second = write_masks(subset, out, pose_model=model_path, workers=1, verbose=False, low_confidence=1.01)
    assert second["skipped_existing"] == len(masks) - 1 and second["written"] == 1 and removed.exists()
    low = [r["image"] for r in read_report(out / REPORT_NAME) if r["reason"] == "low_confidence"]
    assert sorted(low) == sorted(os.path.join("query", m[:-4] + ".jpg") for m in masks)
    assert os.path.getmtime(kept) == 1 and kept.read_bytes() == content
    third = write_masks(subset, out, pose_model=model_path, workers=1, overwrite=True, verbose=False)
    assert third["skipped_existing"] == 0 and third["written"] == len(masks) and os.path.getmtime(kept) > 1


def test_cli_writes_masks_preview_and_summary(synthetic, model_path, tmp_path, capsys):
    from keras_mmga.cli import main

    images, _ = synthetic
    subset = tmp_path / "images"
    shutil.copytree(os.path.join(images, "query"), subset / "query")
    rc = main(
        [
            "masks",
            str(subset),
            "--output",
            str(tmp_path / "m"),
            "--pose-model",
            model_path,
            "--workers",
            "1",
            "--preview",
            "3",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 0 and "masks written:" in err and "unreadable images: 1" in err
    sheet = cv2.imread(str(tmp_path / "m" / "make_masks_preview.png"))
    assert sheet is not None and sheet.shape[0] == 128 and sheet.shape[1] >= 3 * 64 * 3


def test_cli_wrong_pose_model_is_one_error_line(synthetic, tmp_path, capsys):
    from keras_mmga.cli import main

    images, _ = synthetic
    bad = tmp_path / "pose.tflite"
    bad.write_text("not a model")
    rc = main(["masks", images, "--output", str(tmp_path / "m"), "--pose-model", str(bad)])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: --pose-model") and "Traceback" not in err
    assert "Ways to get it" in err


@pytest.mark.slow
def test_script_with_forked_workers(synthetic, model_path, tmp_path):
    # A process without TensorFlow forks its workers (the pytest process, with
    # TensorFlow loaded, spawns them: test_resume_keeps_masks_and_overwrite_remakes_them).
    import sys

    images, _ = synthetic
    subset = tmp_path / "images"
    shutil.copytree(os.path.join(images, "query"), subset / "query")
    script = os.path.join(os.path.dirname(__file__), os.pardir, "scripts", "make_masks.py")
    done = subprocess.run(
        [
            sys.executable,
            script,
            str(subset),
            "--output",
            str(tmp_path / "m"),
            "--pose-model",
            model_path,
            "--workers",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    pngs = sorted(p for p in os.listdir(tmp_path / "m" / "query") if p.endswith(".png"))
    images_with_person = len(os.listdir(subset / "query")) - 1  # broken.jpg
    assert f"masks written: {len(pngs)}" in done.stderr and 0 < len(pngs) <= images_with_person


# --- the output folder: lock, Ctrl-C, folders that cannot work (no pose model needed) ----------------------


def _fake_parser_run(monkeypatch, stop_after=None):
    """`write_masks` with a stand-in parser: every image gets a mask of confidence 0.3 (low)."""
    from keras_mmga.masks import writer

    done = []

    def process(rel):
        if stop_after is not None and len(done) == stop_after:
            raise KeyboardInterrupt
        images_root, masks_root = writer._SETTINGS
        target = os.path.join(masks_root, writer.mask_relpath(rel))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        cv2.imwrite(target, np.full((8, 4), 13, np.uint8))
        done.append(rel)
        return rel, "written", 0.3, "", ()

    monkeypatch.setattr(writer, "_init_worker", lambda *settings, **kw: setattr(writer, "_SETTINGS", settings[3:5]))
    monkeypatch.setattr(writer, "_process", process)
    monkeypatch.setattr(pm, "resolve_pose_model", lambda *a, **k: "unused.tflite")
    return done


def _images(folder, count):
    os.makedirs(folder, exist_ok=True)
    for i in range(count):
        cv2.imwrite(os.path.join(folder, f"{i:04d}_c1s1_000100_00.jpg"), np.zeros((8, 4, 3), np.uint8))
    return str(folder)


def test_ctrl_c_keeps_the_masks_and_a_complete_report_then_resume_finishes(tmp_path, monkeypatch, capsys):
    from keras_mmga.cli import main

    images, out = _images(tmp_path / "images", 5), tmp_path / "masks"
    _fake_parser_run(monkeypatch, stop_after=3)
    assert main(["masks", images, "--output", str(out), "--workers", "1", "--quiet"]) == 130
    err = capsys.readouterr().err
    assert err.startswith("error: interrupted (3 masks written this run are kept") and err.count("\n") == 1
    low = [r["image"] for r in read_report(out / REPORT_NAME) if r["reason"] == "low_confidence"]
    assert len(low) == 3 == len(os.listdir(out)) - 1  # every mask kept is in the report
    assert not os.path.exists(out / ".keras-mmga.lock")
    _fake_parser_run(monkeypatch)
    assert main(["masks", images, "--output", str(out), "--workers", "1", "--quiet"]) == 0
    low = [r["image"] for r in read_report(out / REPORT_NAME) if r["reason"] == "low_confidence"]
    assert len(low) == 5  # the resumed run's report holds the first run's rows too


def test_second_run_on_a_locked_folder_is_refused_and_a_stale_lock_taken_over(tmp_path, monkeypatch, capsys):
    import json
    import subprocess
    import sys

    from keras_mmga.cli import main
    from keras_mmga.run_lock import LOCK_NAME

    images, out = _images(tmp_path / "images", 2), tmp_path / "masks"
    out.mkdir()
    _fake_parser_run(monkeypatch)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        import socket

        (out / LOCK_NAME).write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname(), "what": "masks"}))
        assert main(["masks", images, "--output", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {str(out)!r} is in use by another keras-mmga masks (pid {holder.pid})")
        assert err.count("\n") == 1 and not (out / "0000_c1s1_000100_00.png").exists()
    finally:
        holder.kill()
        holder.wait()
    # Its process is gone: the lock is stale and taken over.
    assert main(["masks", images, "--output", str(out), "--quiet"]) == 0
    assert (out / "0000_c1s1_000100_00.png").exists() and not (out / LOCK_NAME).exists()


def test_masks_folder_problems_are_one_line_before_the_model(tmp_path, monkeypatch, capsys):
    from keras_mmga.cli import main

    monkeypatch.setattr(pm, "resolve_pose_model", lambda *a, **k: pytest.fail("model fetched"))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    photo = tmp_path / "photo.jpg"
    cv2.imwrite(str(photo), np.zeros((8, 4, 3), np.uint8))
    images = _images(tmp_path / "images", 1)
    for argv, message in [
        ([str(tmp_path / "empty"), "--output", str(tmp_path / "m")], "No images (.jpg"),
        ([str(photo), "--output", str(tmp_path / "m")], "photo.jpg' is a file, not a folder"),
        ([str(tmp_path / "absent"), "--output", str(tmp_path / "m")], "Image folder not found"),
        ([images, "--output", str(photo)], "is an existing file: give a folder"),
    ]:
        assert main(["masks"] + argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "m").exists()


def test_first_fetch_says_so_before_it_starts(tmp_path, monkeypatch):
    lines = []
    monkeypatch.setattr(pm.subprocess, "run", lambda cmd, **kw: subprocess.CompletedProcess(cmd, 1, "", "offline"))
    with pytest.raises(pm.PoseModelError):
        pm.resolve_pose_model(cache_dir=tmp_path, log=lines.append)
    assert len(lines) == 1 and lines[0].startswith("fetching pose_landmark_full.tflite once")


def test_shared_colours_and_run_width_against_hand_counts():
    rng = np.random.RandomState(0)
    red, white, blue = (np.array(c, np.float64) for c in ((90, 170, 150), (250, 128, 128), (60, 140, 80)))
    stripes = np.concatenate([red + rng.randn(200, 3) * 2, white + rng.randn(200, 3) * 2])
    # Below a striped top: the same stripes (all shared), trousers (none shared), 30 % stripes + 70 % trousers.
    assert _shared_colours(stripes, stripes[::3]) == 1.0
    assert _shared_colours(stripes, blue + rng.randn(100, 3) * 2) == 0.0
    mixed = np.concatenate([stripes[:30], blue + rng.randn(70, 3) * 2])
    assert _shared_colours(stripes, mixed) == pytest.approx(0.3)
    # A colour worn by under 2 % of the reference does not count as worn.
    rare = np.concatenate([stripes, blue + rng.randn(5, 3)])
    assert _shared_colours(rare, blue[None] + rng.randn(50, 3)) == 0.0
    mask = np.zeros((4, 12), bool)
    mask[1, 3:8] = True  # a run of 5
    mask[2, :] = True  # a full row
    mask[3, [0, 2, 3]] = True
    assert [_run_width(mask, p) for p in ((3, 1), (7, 1), (5, 1), (9, 1), (0, 2), (11, 2), (0, 3), (3, 3))] == [
        5,
        5,
        5,
        0,
        12,
        12,
        1,
        2,
    ]
    assert _run_extent(mask, (3, 1)) == (3, 7) and _run_extent(mask, (9, 1)) is None
    # Nearer to the first set: (0, 0, 0) yes, (10, 0, 0) a tie (no), (20, 0, 0) no.
    line = np.array([[0.0, 0, 0], [10.0, 0, 0], [20.0, 0, 0]])
    assert _closer_to(line, line[:1], line[2:]) == pytest.approx(1 / 3)
    # The widest run along a line: rows 1 to 3 through column 3 are 5, 12 and 2 wide.
    assert _trunk_width(mask, np.array([3.0, 1.0]), np.array([3.0, 3.0])) == 12
    assert _trunk_width(mask, np.array([3.0, 1.0]), np.array([3.0, 1.0])) == 5


def test_shared_colours_tolerance_does_not_wrap_from_black_to_white():
    black = np.zeros((100, 3)) + (2, 128, 128)
    white = np.zeros((100, 3)) + (253, 128, 128)
    grey = np.zeros((100, 3)) + (20, 128, 128)  # one L bin above black: within the tolerance
    assert _shared_colours(black, white) == 0.0
    assert _shared_colours(black, grey) == 1.0
