import cv2
import numpy as np
import pytest

from keras_mmga import visualize


def test_attention_overlay_panel(tmp_path):
    image = np.full((64, 32, 3), 100, np.uint8)
    maps = {"module2_bottom": np.eye(4, 2), "module2_whole": np.ones((4, 2)), "module2_upper": np.zeros((4, 2))}
    path = tmp_path / "a" / "overlay.png"
    visualize.save_attention_overlay(path, image, maps)
    panel = cv2.imread(str(path))
    assert panel.shape == (64, 32 * (2 + 3), 3)
    np.testing.assert_array_equal(panel[:, :32], image)


def test_ranking_grid_border_colours(tmp_path):
    paths = []
    for i in range(4):
        p = tmp_path / f"{i}.jpg"
        cv2.imwrite(str(p), np.full((20, 10, 3), 50 * i, np.uint8))
        paths.append(str(p))
    grid = visualize.ranking_grid(paths[0], paths[1:], [True, False, True], size=(32, 16), border=3)
    assert grid.shape == (32 + 6, 4 * (16 + 6), 3)
    tile = 16 + 6
    corner = lambda k: tuple(int(c) for c in grid[0, k * tile])  # noqa: E731
    assert corner(0) == visualize.GREY and corner(1) == visualize.GREEN
    assert corner(2) == visualize.RED and corner(3) == visualize.GREEN


def test_save_ranking_grids_skips_same_camera_matches(tmp_path):
    paths = []
    for i in range(4):
        p = tmp_path / f"{i}.jpg"
        cv2.imwrite(str(p), np.full((20, 10, 3), 60 * i, np.uint8))
        paths.append(str(p))
    query = [(paths[0], 1, 0)]
    gallery = [(paths[1], 1, 0), (paths[2], 2, 1), (paths[3], 1, 1)]  # first: same pid and camera
    written = visualize.save_ranking_grids(tmp_path / "out", np.array([[0.0, 0.1, 0.2]]), query, gallery, topk=2)
    grid = cv2.imread(written[0])
    tile = grid.shape[1] // 3
    assert tuple(int(c) for c in grid[0, tile]) == visualize.RED       # pid 2 ranks first once pid1/cam0 is removed
    assert tuple(int(c) for c in grid[0, 2 * tile]) == visualize.GREEN


def test_unreadable_image_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        visualize.ranking_grid(str(tmp_path / "missing.jpg"), [], [])
