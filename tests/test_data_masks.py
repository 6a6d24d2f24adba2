import cv2
import numpy as np
import pytest

from keras_mmga.data import masks


def test_lip_grouping_against_hand_made_map():
    label_map = np.array(
        [
            [0, 2, 13, 0],  # hair, face -> upper
            [14, 5, 5, 15],  # arms, upper clothes -> upper
            [0, 6, 10, 0],  # dress, jumpsuit -> upper by default
            [16, 9, 12, 17],  # legs, pants, skirt -> bottom
            [18, 8, 0, 19],  # shoes, socks -> bottom
        ]
    )
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
    full[:4, :, 1] = 1  # half of the first row of cells
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
        masks.load_targets(
            [str(tmp_path / "img" / "c.jpg")], tmp_path / "img", tmp_path / "mask", (2, 1), missing="ignore"
        )


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
        masks.load_targets(
            [str(tmp_path / "img" / "a.jpg")], tmp_path / "img", tmp_path / "mask", (2, 1), missing="ignore"
        )
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
            masks.load_targets(
                [str(tmp_path / "img" / "a.jpg")], tmp_path / "img", tmp_path / "mask", (2, 1), missing=missing
            )
        assert "mask_format='binary'" not in str(err.value)  # the old, wrong hint
    cv2.imwrite(str(tmp_path / "mask" / "a.png"), label)  # a real PNG of the same labels is read
    targets, weights = masks.load_targets(
        [str(tmp_path / "img" / "a.jpg")], tmp_path / "img", tmp_path / "mask", (2, 1)
    )
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


# Hand-made LIP parsing, one body region a row (dress and jumpsuit on row 4).
BODY = np.array(
    [
        [0, 1, 2, 0],  # hat, hair            -> head
        [0, 13, 13, 4],  # face, sunglasses     -> head
        [14, 5, 5, 15],  # arms, upper clothes  -> torso
        [3, 7, 11, 0],  # glove, coat, scarf   -> torso
        [0, 6, 10, 0],  # dress, jumpsuit      -> dress_group
        [16, 9, 12, 17],  # legs, pants, skirt   -> legs
        [0, 8, 8, 0],  # socks                -> feet
        [18, 0, 0, 19],  # shoes                -> feet
    ],
    np.uint8,
)
WHOLE = np.array(
    [[0, 1, 1, 0], [0, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 0], [0, 1, 1, 0], [1, 1, 1, 1], [0, 1, 1, 0], [1, 0, 0, 1]]
)


def _rows(*rows):
    """A 0/1 8x4 map: the body pixels (WHOLE) of the given rows."""
    out = np.zeros_like(WHOLE)
    out[list(rows)] = WHOLE[list(rows)]
    return out


def test_four_named_parts_of_a_hand_made_map():
    got = masks.group_label_map(BODY, parts=("head", "torso", "legs", "feet"))
    assert got.shape == (8, 4, 5) and got.dtype == np.float32
    for channel, expected in enumerate([WHOLE, _rows(0, 1), _rows(2, 3, 4), _rows(5), _rows(6, 7)]):
        np.testing.assert_array_equal(got[..., channel], expected, err_msg=f"channel {channel}")
    # The same through binary_masks (mode "parts"), and area-reduced: 2x2 cells of 4x2 pixels.
    full = masks.binary_masks(BODY, "parts", parts=["head", "torso", "legs", "feet"])
    np.testing.assert_array_equal(full, got)
    reduced = masks.reduce_to(full, (2, 2))
    assert reduced.shape == (2, 2, 5)
    np.testing.assert_allclose(reduced[..., 1], [[2 / 8, 3 / 8], [0, 0]])  # head: rows 0-1 of each cell's 0-3
    np.testing.assert_allclose(reduced[..., 4], [[0, 0], [2 / 8, 2 / 8]])  # feet: rows 6-7


def test_upper_bottom_parts_are_todays_grouping():
    upper, bottom = _rows(0, 1, 2, 3, 4), _rows(5, 6, 7)
    default = masks.group_label_map(BODY)
    named = masks.group_label_map(BODY, parts=("upper", "bottom"))
    assert default.shape == (8, 4, 3) and named.tobytes() == default.tobytes()
    for channel, expected in enumerate([WHOLE, upper, bottom]):
        np.testing.assert_array_equal(default[..., channel], expected)
    assert masks.check_grouping() == (masks.UPPER_LABELS + masks.DRESS_LABELS, masks.BOTTOM_LABELS)
    # The finer groups split the paper's halves exactly.
    groups = masks.PART_GROUPS
    assert sorted(groups["head"] + groups["torso"]) == sorted(masks.UPPER_LABELS)
    assert sorted(groups["legs"] + groups["feet"]) == sorted(masks.BOTTOM_LABELS)
    with pytest.raises(TypeError):
        groups["head"] = (1,)  # read-only: every model's targets depend on it
    # Reversed order reverses the channels.
    np.testing.assert_array_equal(masks.group_label_map(BODY, parts=("bottom", "upper"))[..., 1], bottom)


@pytest.mark.parametrize("dress_group, in_torso, in_legs", [("upper", 1, 0), ("bottom", 0, 1), ("none", 0, 0)])
def test_dress_follows_the_torso_or_the_legs(dress_group, in_torso, in_legs):
    got = masks.group_label_map(BODY, dress_group, parts=("head", "torso", "legs", "feet"))
    np.testing.assert_array_equal(got[4, 1:3], [[1, 0, in_torso, in_legs, 0]] * 2)  # dress, jumpsuit pixels
    halves = masks.group_label_map(BODY, dress_group, parts=("upper", "bottom"))
    np.testing.assert_array_equal(halves[4, 1:3], [[1, in_torso, in_legs]] * 2)
    # Mixed levels: legs gets the dress with "bottom", upper with "upper".
    mixed = masks.group_label_map(BODY, dress_group, parts=("upper", "legs", "feet"))
    np.testing.assert_array_equal(mixed[4, 1], [1, in_torso, in_legs, 0])


def test_custom_label_groups_with_any_part_name():
    # A custom part, a named one overridden, a named one as it is.
    got = masks.group_label_map(
        BODY, parts=("head", "arms", "legs"), label_groups={"arms": [14, 15, 3], "head": [2, 13]}
    )
    arms = np.zeros((8, 4), int)
    arms[2, [0, 3]] = arms[3, 0] = 1
    head = np.zeros((8, 4), int)
    head[0, 2] = head[1, 1] = head[1, 2] = 1
    np.testing.assert_array_equal(got[..., 1], head)
    np.testing.assert_array_equal(got[..., 2], arms)
    np.testing.assert_array_equal(got[..., 3], _rows(5))
    # With custom groups the whole body is the union of the parts' groups (labels outside are background).
    np.testing.assert_array_equal(got[..., 0], head | arms | _rows(5))
    assert masks.check_grouping(label_groups={"arms": 14}, parts=("arms",)) == ((14,),)


def test_bad_part_names_are_errors_naming_them():
    with pytest.raises(
        ValueError,
        match=r"Unknown part group 'torsoo' in parts.*head, torso, upper, legs, feet, "
        r"bottom.*label_groups",
    ):
        masks.check_grouping(parts=("head", "torsoo"))
    with pytest.raises(ValueError, match=r"'legs' more than once"):
        masks.group_label_map(BODY, parts=("legs", "head", "legs"))
    with pytest.raises(ValueError, match="'whole' is mask channel 0"):
        masks.check_parts(("whole", "head"))
    with pytest.raises(ValueError, match="parts must be a sequence of part-group names"):
        masks.check_parts("head")
    with pytest.raises(ValueError, match="at least one part group"):
        masks.check_parts(())
    with pytest.raises(ValueError, match="must be lower-case identifiers.*'left arm'"):
        masks.check_parts(("left arm",), label_groups={"left arm": [14]})
    # A label_groups key that is not a part, labels out of range, a label in two parts, empty parts.
    with pytest.raises(ValueError, match=r"keys must be 'head', 'torso' and 'legs' \(the parts\), got \['feet'\]"):
        masks.check_grouping(label_groups={"feet": [18]}, parts=("head", "torso", "legs"))
    with pytest.raises(ValueError, match=r"label_groups\['arms'\] holds \[20\]"):
        masks.check_grouping(label_groups={"arms": [14, 20]}, parts=("arms",))
    with pytest.raises(ValueError, match=r"labels \[1, 2, 4, 13\] are in both the upper and head groups"):
        masks.check_grouping(parts=("upper", "head"))
    with pytest.raises(ValueError, match=r"labels \[3\] are in both the arms and torso groups"):
        masks.check_grouping(label_groups={"arms": [3, 16]}, parts=("arms", "torso"))
    with pytest.raises(ValueError, match=r"label_groups\['arms'\] is empty: every arms-body target"):
        masks.check_grouping(label_groups={"arms": []}, parts=("head", "arms"), allow_empty=False)
    assert masks.check_grouping(label_groups={"arms": []}, parts=("head", "arms"))[1] == ()


def test_zero_one_mask_read_as_lip_is_an_error_for_any_parts():
    body = (WHOLE > 0).astype(np.uint8)  # all "hat" read as LIP
    with pytest.raises(
        ValueError,
        match=r"'b\.png' holds only the values 0 and 1.*all head body, and the "
        r"torso and legs and feet targets would be empty.*mask_format='binary'",
    ):
        masks.binary_masks(body, parts=("head", "torso", "legs", "feet"), path="b.png")
    with pytest.raises(ValueError, match=r"in no part, and the legs target would be empty"):
        masks.binary_masks(body, parts=("legs",))


def test_parts_only_in_parts_mode_and_load_targets_channels(tmp_path):
    with pytest.raises(ValueError, match=r"parts=\('head',\) needs mode='parts'.*got mode='halves'"):
        masks.binary_masks(BODY, "halves", parts=("head",))
    (tmp_path / "img").mkdir()
    (tmp_path / "mask").mkdir()
    cv2.imwrite(str(tmp_path / "mask" / "a.png"), np.repeat(np.repeat(BODY, 4, axis=0), 4, axis=1))
    paths = [str(tmp_path / "img" / "a.jpg")]
    args = (paths, tmp_path / "img", tmp_path / "mask", (2, 1))
    targets, weights = masks.load_targets(*args, parts=("head", "torso", "legs", "feet"))
    assert targets.shape == (1, 2, 1, 5) and weights.tolist() == [1]
    # Cells of 16x16 pixels = rows 0-3 and 4-7 of BODY: head 5/16 and 0, feet 0 and 4/16.
    np.testing.assert_allclose(targets[0, :, 0, 1], [5 / 16, 0])
    np.testing.assert_allclose(targets[0, :, 0, 4], [0, 4 / 16])
    np.testing.assert_allclose(targets[0, :, 0, 0], [12 / 16, 10 / 16])
    assert masks.load_targets(*args)[0].shape == (1, 2, 1, 3)
    assert masks.load_targets(*args, mode="whole")[0].shape == (1, 2, 1, 3)
    with pytest.raises(ValueError, match=r"needs mode='parts'"):
        masks.load_targets(*args, mode="whole", parts=("head",))
    with pytest.raises(ValueError, match="Unknown part group 'hands'"):
        masks.load_targets(*args, parts=("hands",))
