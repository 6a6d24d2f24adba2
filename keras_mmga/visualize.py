"""Pictures (OpenCV, PNG): attention overlays (paper Figures 1 and 5) and top-k retrieval grids.

Colour order: the functions that take images in memory take RGB by default
(what the model and `tf.data` use) and return pictures in the same order;
`channel_order="bgr"` says the arrays are OpenCV's BGR instead. Images read
from paths are converted as needed, and the `save_*` functions write PNGs
with the right colours either way.
"""

import os

import cv2
import numpy as np

# Border colours, RGB.
GREEN = (0, 200, 0)  # true match
RED = (230, 0, 0)  # false match
GREY = (160, 160, 160)  # the query

# Order of the maps in a panel; other names follow alphabetically.
_MAP_ORDER = ("module1_whole", "module2_whole", "whole", "module2_upper", "upper", "module2_bottom", "bottom")


def read_image(path, channel_order="bgr"):
    """uint8 (H, W, 3) image; a missing or unreadable file is an error naming it.

    Args:
        path: image file.
        channel_order: `"bgr"` (OpenCV's, the default here for compatibility)
            or `"rgb"`.
    """
    _check_order(channel_order)
    image = cv2.imread(os.fspath(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"Cannot read image {os.fspath(path)!r} (missing, or not an image OpenCV decodes).")
    return image if channel_order == "bgr" else np.ascontiguousarray(image[..., ::-1])


def heat_map(attention, size, channel_order="rgb"):
    """A spatial map (h, w), min-max normalised, resized to `size = (H, W)`, JET colours, uint8.

    A constant map (no contrast) is drawn as all zeros (blue).
    """
    _check_order(channel_order)
    a = np.asarray(attention, np.float32)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim != 2:
        raise ValueError(f"An attention map must be (h, w); got shape {a.shape}.")
    a = (a - a.min()) / max(float(a.max() - a.min()), 1e-12)
    a = cv2.resize(a, (int(size[1]), int(size[0])), interpolation=cv2.INTER_LINEAR)
    coloured = cv2.applyColorMap(np.uint8(np.clip(a, 0, 1) * 255 + 0.5), cv2.COLORMAP_JET)  # BGR
    return coloured if channel_order == "bgr" else np.ascontiguousarray(coloured[..., ::-1])


def attention_overlay(image, maps, alpha=0.5, channel_order="rgb"):
    """Panel as in the paper's Figures 1 / 5: image | whole attention over the image | each map alone.

    Args:
        image: (H, W, 3) image, uint8 or float in [0, 255] (the model's input).
        maps: dict name -> (h, w) spatial map (`MMGA.attention_maps(x)` for one
            image, e.g. `{k: v[0] for k, v in maps.items()}`), or an array
            (h, w) (one map) or (k, h, w) (k maps). Maps are shown in the
            order module-1 whole, whole, upper, bottom, then any other part
            maps in the order given (one map per part); the overlay uses the
            module-2 whole map when there is one, else the first map.
        alpha: weight of the heat map in the overlay.
        channel_order: `"rgb"` or `"bgr"`, of `image` and of the result.

    Returns:
        uint8 panel (H, W · (2 + number of maps), 3), in `channel_order`.

    Example:
    ```python
    maps = {k: v[0] for k, v in model.attention_maps(image[None]).items()}
    panel = attention_overlay(image, maps)                  # RGB in, RGB out
    ```
    """
    _check_order(channel_order)
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"Expected an (H, W, 3) image, got shape {image.shape}.")
    if image.dtype != np.uint8:
        image = np.uint8(np.clip(np.round(image), 0, 255))
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}.")
    named = _named_maps(maps)
    size = image.shape[:2]
    # The paper's maps in its order; other parts (MMGA(parts=...)) in the model's order after them.
    given = list(named)
    names = sorted(named, key=lambda k: (_MAP_ORDER.index(k) if k in _MAP_ORDER else len(_MAP_ORDER), given.index(k)))
    whole = next((k for k in ("module2_whole", "whole") if k in named), names[0])
    heat = {k: heat_map(named[k], size, channel_order) for k in names}
    overlay = cv2.addWeighted(image, 1.0 - alpha, heat[whole], alpha, 0.0)
    return np.hstack([image, overlay] + [heat[k] for k in names])


def save_attention_overlay(path, image, maps, alpha=0.5, channel_order="rgb"):
    """Writes `attention_overlay(...)` as an image file (PNG by the extension); returns the path.

    Example:
    ```python
    save_attention_overlay("pics/attention/0001_c1.png", image_rgb, maps)
    ```
    """
    panel = attention_overlay(image, maps, alpha, channel_order)
    return _write(path, panel if channel_order == "bgr" else panel[..., ::-1])


def ranking_grid(query, gallery, matches, size=(128, 64), border=4, channel_order="rgb"):
    """A row: the query, then its ranked gallery images, bordered green (true match) / red (false).

    Args:
        query: image path, or (H, W, 3) uint8 array in `channel_order`.
        gallery: list of paths or arrays, best ranked first (k of them).
        matches: booleans, one per gallery image.
        size: (H, W) every image is resized to.
        border: border width in pixels (the query's is grey).
        channel_order: `"rgb"` or `"bgr"`, of the array inputs and the result.

    Returns:
        uint8 (H + 2·border, (1 + k)·(W + 2·border), 3) image.

    Example:
    ```python
    grid = ranking_grid("query/0001_c1s1_001051_00.jpg", top10_paths, top10_pids == 1)
    ```
    """
    _check_order(channel_order)
    matches = list(matches)
    if len(gallery) != len(matches):
        raise ValueError(f"{len(gallery)} gallery images but {len(matches)} match flags.")
    if border < 0 or size[0] < 1 or size[1] < 1:
        raise ValueError(f"Need a positive size and border >= 0; got size={size}, border={border}.")

    def tile(img, colour):
        if isinstance(img, (str, os.PathLike)):
            img = read_image(img, channel_order)
        img = np.asarray(img)
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"Expected an (H, W, 3) image, got shape {img.shape}.")
        img = cv2.resize(np.uint8(np.clip(img, 0, 255)), (int(size[1]), int(size[0])), interpolation=cv2.INTER_AREA)
        colour = colour if channel_order == "rgb" else colour[::-1]
        return cv2.copyMakeBorder(img, border, border, border, border, cv2.BORDER_CONSTANT, value=colour)

    tiles = [tile(query, GREY)] + [tile(g, GREEN if m else RED) for g, m in zip(gallery, matches)]
    return np.hstack(tiles)


def save_ranking_grids(
    out_dir, distmat, query_samples, gallery_samples, topk=10, max_queries=20, size=(128, 64), border=4
):
    """Writes a top-k ranking grid (PNG) for each of the first `max_queries` queries.

    Gallery entries with the query's identity **and** camera are skipped,
    as in the evaluation; ties keep gallery order (stable sort).

    Args:
        out_dir: folder (created).
        distmat: (Q, G) distances.
        query_samples: list of `(path, pid, camid)`, Q of them.
        gallery_samples: list of `(path, pid, camid)`, G of them.
        topk: gallery images a row.
        max_queries: how many queries (the first ones).
        size, border: as in `ranking_grid`.

    Returns:
        The written paths, `ranking_{index:03d}_{query file stem}.png`.

    Example:
    ```python
    save_ranking_grids("pics/rankings", distmat, market.query, market.gallery, topk=10)
    ```
    """
    distmat = np.asarray(distmat)
    if distmat.shape != (len(query_samples), len(gallery_samples)):
        raise ValueError(
            f"distmat {distmat.shape} does not match {len(query_samples)} queries and "
            f"{len(gallery_samples)} gallery samples."
        )
    os.makedirs(out_dir, exist_ok=True)
    g_paths = [s[0] for s in gallery_samples]
    g_pids = np.array([s[1] for s in gallery_samples])
    g_cams = np.array([s[2] for s in gallery_samples])
    written = []
    for i, (q_path, q_pid, q_cam) in enumerate(query_samples[:max_queries]):
        order = np.argsort(distmat[i], kind="stable")
        order = order[~((g_pids[order] == q_pid) & (g_cams[order] == q_cam))][:topk]
        grid = ranking_grid(q_path, [g_paths[j] for j in order], g_pids[order] == q_pid, size, border, "bgr")
        stem = os.path.splitext(os.path.basename(os.fspath(q_path)))[0]
        written.append(_write(os.path.join(os.fspath(out_dir), f"ranking_{i:03d}_{stem}.png"), grid))
    return written


def _named_maps(maps):
    if isinstance(maps, dict):
        if not maps:
            raise ValueError("No attention maps given.")
        return {str(k): np.asarray(v) for k, v in maps.items()}
    maps = np.asarray(maps)
    if maps.ndim == 2:
        return {"whole": maps}
    if maps.ndim == 3:
        names = ["whole", "upper", "bottom"] if len(maps) == 3 else [f"map{i}" for i in range(len(maps))]
        return dict(zip(names, maps))
    raise ValueError(f"Attention maps must be a dict, (h, w) or (k, h, w); got shape {maps.shape}.")


def _check_order(channel_order):
    if channel_order not in ("rgb", "bgr"):
        raise ValueError(f"channel_order must be 'rgb' or 'bgr', got {channel_order!r}.")


def _write(path, image_bgr):
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    if not cv2.imwrite(path, image_bgr):
        raise OSError(f"Could not write {path!r} (unsupported extension or unwritable folder).")
    return path


def write_pictures(model, data, distmat, out_dir, max_queries=12):
    """Ranking grids and attention overlays (paper Figures 1 and 5) of the first queries.

    Args:
        model: the evaluated model (overlays need `attention_maps`).
        data: the `ReIDDataset` evaluated.
        distmat: its (Q, G) distance matrix.
        out_dir: folder; `rankings/` and `attention/` are written in it.
        max_queries: how many queries.

    Returns:
        The written paths.
    """
    out_dir = os.fspath(out_dir)
    written = save_ranking_grids(
        os.path.join(out_dir, "rankings"), distmat, data.query, data.gallery, max_queries=max_queries
    )
    # Baseline variants have no attention module: nothing to overlay.
    if not getattr(model, "has_attention", False):
        return written
    height, width = model.image_size
    for path, _, _ in data.query[:max_queries]:
        shown = cv2.resize(read_image(path, channel_order="rgb"), (width, height), interpolation=cv2.INTER_LINEAR)
        maps = {k: np.asarray(v)[0] for k, v in model.attention_maps(shown.astype(np.float32)[None]).items()}
        target = os.path.join(out_dir, "attention", os.path.splitext(os.path.basename(path))[0] + ".png")
        save_attention_overlay(target, shown, maps, channel_order="rgb")
        written.append(target)
    return written
