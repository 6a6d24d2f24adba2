import cv2
import numpy as np
import pytest

from keras_mmga.data import masks


def test_lip_grouping_against_hand_made_map():
    label_map = np.array([
        [0, 2, 13, 0],    # hair, face -> upper
        [14, 5, 5, 15],   # arms, upper clothes -> upper
        [0, 6, 10, 0],    # dress, jumpsuit -> upper by default
        [16, 9, 12, 17],  # legs, pants, skirt -> bottom
        [18, 8, 0, 19],   # shoes, socks -> bottom
    ])
    got = masks.group_label_map(label_map)
    upper = np.array([[0, 1, 1, 0], [1, 1, 1, 1], [0, 1, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    bottom = np.array([[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1], [1, 1, 0, 1]])
    np.testing.assert_array_equal(got[..., 1], upper)
    np.testing.assert_array_equal(got[..., 2], bottom)
    np.testing.assert_array_equal(got[..., 0], upper | bottom)
    moved = masks.group_label_map(label_map, dress_group="bottom")
    assert moved[2, 1, 2] == 1 and moved[2, 1, 1] == 0


def test_area_reduction_gives_soft_fractions():
    full = np.zeros((32, 16, 3), np.float32)
    full[:8, :4, 0] = 1  # exactly one 8x4 cell of a (4, 4) grid
    full[:4, :, 1] = 1   # half of the first row of cells
    reduced = masks.reduce_to(full, (4, 4))
    assert reduced.shape == (4, 4, 3)
    assert reduced[0, 0, 0] == pytest.approx(1.0) and reduced[..., 0].sum() == pytest.approx(1.0)
    np.testing.assert_allclose(reduced[0, :, 1], 0.5)
    assert reduced[1:, :, 1].sum() == 0


def test_dmga_halves_split_at_the_middle_row():
    whole = np.zeros((6, 2))
    whole[1:5] = 1
    got = masks.binary_masks((whole * 255).astype(np.uint8), mode="halves", mask_format="binary")
    np.testing.assert_array_equal(got[..., 1][:, 0], [0, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(got[..., 2][:, 0], [0, 0, 0, 1, 1, 0])
    np.testing.assert_array_equal(got[..., 0], got[..., 1] + got[..., 2])


def test_binary_masks_cannot_give_parts():
    with pytest.raises(ValueError, match="no parts"):
        masks.binary_masks(np.zeros((4, 4), np.uint8), mode="parts", mask_format="binary")


def test_load_targets_missing_mask_error_or_ignore(tmp_path):
    (tmp_path / "img" / "query").mkdir(parents=True)
    (tmp_path / "mask" / "query").mkdir(parents=True)
    label = np.zeros((32, 16), np.uint8)
    label[:16] = 5
    label[16:] = 9
    cv2.imwrite(str(tmp_path / "mask" / "query" / "a.png"), label)
    paths = [str(tmp_path / "img" / "query" / "a.jpg"), str(tmp_path / "img" / "query" / "b.jpg")]
    with pytest.raises(FileNotFoundError, match=r"b\.png"):
        masks.load_targets(paths, tmp_path / "img", tmp_path / "mask", (2, 1))
    targets, weights = masks.load_targets(paths, tmp_path / "img", tmp_path / "mask", (2, 1), missing="ignore")
    np.testing.assert_array_equal(weights, [1, 0])
    np.testing.assert_array_equal(targets[0, :, 0], [[1, 1, 0], [1, 0, 1]])
    (tmp_path / "mask" / "query" / "b.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"b\.png"):
        masks.load_targets(paths, tmp_path / "img", tmp_path / "mask", (2, 1))


def test_whole_mode_repeats_the_whole_mask():
    label_map = np.array([[0, 5], [9, 6]], np.uint8)
    got = masks.binary_masks(label_map, mode="whole")
    expected = np.array([[0, 1], [1, 1]])
    for c in range(3):
        np.testing.assert_array_equal(got[..., c], expected)


def test_dmga_halves_of_a_lip_map_ignore_the_parts():
    # A body that is all "upper clothes": the halves still split at the middle row.
    label_map = np.zeros((4, 2), np.uint8)
    label_map[:, 1] = 5
    got = masks.binary_masks(label_map, mode="halves")
    np.testing.assert_array_equal(got[..., 1], [[0, 1], [0, 1], [0, 0], [0, 0]])
    np.testing.assert_array_equal(got[..., 2], [[0, 0], [0, 0], [0, 1], [0, 1]])


def test_custom_grouping_and_dress_elsewhere():
    label_map = np.array([[2, 6, 9]])
    got = masks.group_label_map(label_map, label_groups={"upper": [9], "bottom": [2]})
    np.testing.assert_array_equal(got[0], [[1, 0, 1], [0, 0, 0], [1, 1, 0]])
    none = masks.group_label_map(label_map, dress_group="none")
    np.testing.assert_array_equal(none[0, 1], [1, 0, 0])  # dress: whole only
    with pytest.raises(ValueError, match="both"):
        masks.group_label_map(label_map, label_groups={"upper": [2], "bottom": [2]})


def test_binary_masks_threshold_and_lip_range_error():
    mask = np.array([[0, 255], [100, 200]], np.uint8)
    np.testing.assert_array_equal(masks.binary_masks(mask, "whole", "binary")[..., 0], [[0, 1], [0, 1]])
    with pytest.raises(ValueError, match=r"found 255 in 'm\.png'"):
        masks.binary_masks(mask, "parts", "lip", path="m.png")


def test_colour_mask_is_an_error_naming_the_file(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "mask").mkdir()
    colour = np.zeros((8, 4, 3), np.uint8)
    colour[..., 2] = 128
    cv2.imwrite(str(tmp_path / "mask" / "c.png"), colour)
    with pytest.raises(ValueError, match=r"c\.png.*colour"):
        masks.load_targets([str(tmp_path / "img" / "c.jpg")], tmp_path / "img", tmp_path / "mask", (2, 1),
                           missing="ignore")


def test_zero_one_whole_body_mask_read_as_lip_is_an_error_naming_the_file(tmp_path):
    # A 0/1 whole-body mask under the default "lip" format would be all "hat" (upper), bottom empty.
    body = np.zeros((8, 4), np.uint8)
    body[1:7, 1:3] = 1
    with pytest.raises(ValueError, match=r"'body\.png'.*only the values 0 and 1.*mask_format='binary'"):
        masks.binary_masks(body, "parts", "lip", path="body.png")
    (tmp_path / "img").mkdir()
    (tmp_path / "mask").mkdir()
    cv2.imwrite(str(tmp_path / "mask" / "a.png"), body)
    with pytest.raises(ValueError, match=r"a\.png.*mask_format='binary'"):
        masks.load_targets([str(tmp_path / "img" / "a.jpg")], tmp_path / "img", tmp_path / "mask", (2, 1),
                           missing="ignore")
    # The same file is a valid binary mask; as LIP its whole mask is right, so halves / whole accept it.
    np.testing.assert_array_equal(masks.binary_masks(body, "whole", "binary")[..., 0], body)
    halves = masks.binary_masks(body, "halves", "binary")
    np.testing.assert_array_equal(masks.binary_masks(body, "halves", "lip"), halves)
    # Real parsings pass: all background (junk images), or any map with a label above 1.
    assert masks.binary_masks(np.zeros((8, 4), np.uint8)).sum() == 0
    hat_and_hair = body.copy()
    hat_and_hair[1, 1] = 2
    assert masks.binary_masks(hat_and_hair)[..., 1].sum() == body.sum()
    # Custom groups define their own labels: a 0/1 map may be a real two-label parsing there.
    custom = masks.binary_masks(body, "parts", label_groups={"upper": [1], "bottom": []})
    np.testing.assert_array_equal(custom[..., 1], body)


def test_jpeg_saved_as_png_is_named_as_such_even_when_ignoring_missing_masks(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "mask").mkdir()
    label = np.zeros((16, 8), np.uint8)
    label[2:14, 2:6] = 5
    ok, data = cv2.imencode(".jpg", label)
    (tmp_path / "mask" / "a.png").write_bytes(data.tobytes())
    for missing in ("error", "ignore"):
        with pytest.raises(ValueError, match=r"a\.png' is a JPEG file, not a PNG.*lossy") as err:
            masks.load_targets([str(tmp_path / "img" / "a.jpg")], tmp_path / "img", tmp_path / "mask", (2, 1),
                               missing=missing)
        assert "mask_format='binary'" not in str(err.value)  # the old, wrong hint
    cv2.imwrite(str(tmp_path / "mask" / "a.png"), label)  # a real PNG of the same labels is read
    targets, weights = masks.load_targets([str(tmp_path / "img" / "a.jpg")], tmp_path / "img", tmp_path / "mask",
                                          (2, 1))
    assert weights[0] == 1 and targets[0, :, :, 1].max() > 0


def test_ignoring_missing_masks_never_drops_every_mask(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "mask").mkdir()
    paths = [str(tmp_path / "img" / f"{c}.jpg") for c in "ab"]
    with pytest.raises(FileNotFoundError, match="Mask root .*typo.* does not exist"):
        masks.load_targets(paths, tmp_path / "img", tmp_path / "typo", (2, 1), missing="ignore")
    # A folder without any of the masks (wrong mirror): the attention loss would be 0.
    with pytest.raises(ValueError, match=r"None of the 2 images has a mask .*a\.png"):
        masks.load_targets(paths, tmp_path / "img", tmp_path / "mask", (2, 1), missing="ignore")
    label = np.zeros((16, 8), np.uint8)
    label[2:14, 2:6] = 9
    cv2.imwrite(str(tmp_path / "mask" / "a.png"), label)
    with pytest.warns(UserWarning, match="1 of 2 images have no usable mask"):
        _, weights = masks.load_targets(paths, tmp_path / "img", tmp_path / "mask", (2, 1), missing="ignore")
    np.testing.assert_array_equal(weights, [1, 0])
