import cv2
import numpy as np
import pytest

from keras_mmga import visualize


def _write_images(folder, n, shape=(20, 10)):
    paths = []
    for i in range(n):
        p = folder / f"{i}.png"
        cv2.imwrite(str(p), np.full(shape + (3,), 40 * i, np.uint8))
        paths.append(str(p))
    return paths


def _px(image, y, x):
    return tuple(int(c) for c in image[y, x])


def test_attention_overlay_panel_layout_and_colours(tmp_path):
    image = np.zeros((64, 32, 3), np.uint8)
    image[..., 0] = 200  # red in RGB
    maps = {
        "module2_bottom": np.eye(4, 2),
        "module2_whole": np.arange(8.0).reshape(4, 2),  # top low -> bottom high
        "module2_upper": np.zeros((4, 2)),
        "module1_whole": np.ones((4, 2)),
    }
    panel = visualize.attention_overlay(image, maps)
    assert panel.shape == (64, 32 * (2 + 4), 3) and panel.dtype == np.uint8
    np.testing.assert_array_equal(panel[:, :32], image)
    # The third tile is module 1's map, the fourth module 2's whole: JET low = blue, high = red (RGB).
    whole = panel[:, 3 * 32 : 4 * 32]
    assert whole[0, 0, 2] > 100 and whole[0, 0, 0] < 50  # top: blue
    assert whole[-1, 0, 0] > 100 and whole[-1, 0, 2] < 50  # bottom: red
    # The overlay blends the module-2 whole map with the image.
    expected = np.round(0.5 * image.astype(float) + 0.5 * whole.astype(float))
    np.testing.assert_allclose(panel[:, 32:64], expected, atol=1)

    path = visualize.save_attention_overlay(tmp_path / "a" / "overlay.png", image, maps)
    saved = cv2.imread(path)[..., ::-1]  # file is BGR
    np.testing.assert_array_equal(saved, panel)
    # The same picture from a BGR image with channel_order="bgr".
    bgr = visualize.attention_overlay(image[..., ::-1], maps, channel_order="bgr")
    np.testing.assert_array_equal(bgr[..., ::-1], panel)


def test_attention_overlay_array_maps_and_errors():
    image = np.full((32, 16, 3), 90.0, np.float32)  # float model input
    assert visualize.attention_overlay(image, np.random.rand(3, 2, 1)).shape == (32, 16 * 5, 3)
    assert visualize.attention_overlay(image, np.random.rand(2, 1)).shape == (32, 16 * 3, 3)
    with pytest.raises(ValueError, match="image"):
        visualize.attention_overlay(image[..., 0], np.ones((2, 1)))
    with pytest.raises(ValueError, match="channel_order"):
        visualize.attention_overlay(image, np.ones((2, 1)), channel_order="hsv")


def test_ranking_grid_size_and_border_colours(tmp_path):
    paths = _write_images(tmp_path, 4)
    size, border = (32, 16), 3
    grid = visualize.ranking_grid(paths[0], paths[1:], [True, False, True], size=size, border=border)
    tile_h, tile_w = 32 + 2 * 3, 16 + 2 * 3
    assert grid.shape == (tile_h, 4 * tile_w, 3)
    for k, colour in enumerate([visualize.GREY, visualize.GREEN, visualize.RED, visualize.GREEN]):
        x0 = k * tile_w
        # Corners, edge midpoints of each tile's border.
        for y, x in [(0, x0), (tile_h - 1, x0 + tile_w - 1), (tile_h // 2, x0 + 1), (1, x0 + tile_w // 2)]:
            assert _px(grid, y, x) == colour, (k, y, x)
        # Inside: the image itself (grey level 40 * k).
        assert _px(grid, tile_h // 2, x0 + tile_w // 2) == (40 * k,) * 3
    bgr = visualize.ranking_grid(
        paths[0], paths[1:], [True, False, True], size=size, border=border, channel_order="bgr"
    )
    np.testing.assert_array_equal(bgr[..., ::-1], grid)


def test_save_ranking_grids_skips_same_camera_matches(tmp_path):
    paths = _write_images(tmp_path, 5)
    query = [(paths[0], 1, 0), (paths[4], 2, 0)]
    # Gallery: same pid and camera as query 0 (removed for it), a false match, a true match.
    gallery = [(paths[1], 1, 0), (paths[2], 2, 1), (paths[3], 1, 1)]
    distmat = np.array([[0.0, 0.1, 0.2], [0.3, 0.2, 0.1]])
    written = visualize.save_ranking_grids(tmp_path / "out", distmat, query, gallery, topk=2, size=(24, 12), border=2)
    assert [p.split("/")[-1] for p in written] == ["ranking_000_0.png", "ranking_001_4.png"]
    tile_w = 12 + 4
    for path, colours in zip(written, [[visualize.RED, visualize.GREEN], [visualize.RED, visualize.GREEN]]):
        grid = cv2.imread(path)[..., ::-1]
        assert grid.shape == (24 + 4, 3 * tile_w, 3)
        assert _px(grid, 0, 0) == visualize.GREY
        for k, colour in enumerate(colours, start=1):
            assert _px(grid, 0, k * tile_w) == colour
    # Query 0's first tile after the query is gallery 2 (grey level 80): gallery 0 was removed.
    grid = cv2.imread(written[0])
    assert _px(grid, 14, tile_w + 8) == (80, 80, 80)
    with pytest.raises(ValueError, match="does not match"):
        visualize.save_ranking_grids(tmp_path / "bad", distmat[:, :2], query, gallery)


def test_unreadable_image_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        visualize.ranking_grid(str(tmp_path / "missing.jpg"), [], [])
    bad = tmp_path / "not_an_image.png"
    bad.write_text("hello")
    with pytest.raises(FileNotFoundError, match="not_an_image.png"):
        visualize.read_image(bad)


def test_attention_overlay_shows_one_tile_per_part_in_the_models_order():
    image = np.zeros((64, 32, 3), np.uint8)
    parts = ("head", "torso", "legs", "feet")
    # Each part's map is constant at a different level, so its tile's colour identifies it.
    levels = {"module1_whole": 0.0, "module2_whole": 1.0}
    levels.update({f"module2_{p}": 2.0 + i for i, p in enumerate(parts)})
    maps = {k: np.full((4, 2), v) for k, v in levels.items()}
    maps["module2_feet"] = np.arange(8.0).reshape(4, 2)  # the only map with a gradient
    panel = visualize.attention_overlay(image, maps)
    assert panel.shape == (64, 32 * (2 + 6), 3)
    feet = panel[:, 7 * 32 : 8 * 32]  # last tile: the last part
    assert feet[0, 0, 2] > 100 and feet[-1, 0, 0] > 100  # blue at the top, red at the bottom
    for tile in range(2, 7):  # the other tiles are flat
        flat = panel[:, tile * 32 : (tile + 1) * 32].reshape(-1, 3)
        assert (flat == flat[0]).all()
