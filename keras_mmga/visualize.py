"""Pictures: attention overlays (paper Figures 1 and 5) and top-k retrieval grids."""

import os

import cv2
import numpy as np

GREEN, RED, GREY = (0, 200, 0), (0, 0, 230), (160, 160, 160)  # BGR


def read_image(path):
    """BGR uint8 image; a missing or unreadable file is an error naming it."""
    image = cv2.imread(os.fspath(path), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"Cannot read image {os.fspath(path)!r}.")
    return image


def heat_map(attention, size):
    """A spatial map (h, w) min-max normalised, resized to `size = (H, W)`, JET colours (BGR)."""
    a = np.asarray(attention, np.float32)
    a = (a - a.min()) / max(float(a.max() - a.min()), 1e-12)
    a = cv2.resize(a, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    return cv2.applyColorMap(np.uint8(np.clip(a, 0, 1) * 255), cv2.COLORMAP_JET)


def attention_overlay(image_bgr, maps, alpha=0.5):
    """Panel: image | whole attention over the image | each map alone.

    Args:
        image_bgr: (H, W, 3) uint8 image (as OpenCV reads it).
        maps: dict name → (h, w) spatial map, e.g. `MMGA.attention_maps(...)`
            for one image; shown in the order whole, upper, bottom.
        alpha: weight of the heat map in the overlay.

    Returns:
        (H, W · (2 + len(maps)), 3) uint8 BGR panel.
    """
    image = np.asarray(image_bgr, np.uint8)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"Expected an (H, W, 3) image, got shape {image.shape}.")
    size = image.shape[:2]
    names = sorted(maps, key=lambda k: ("whole" not in k, "upper" not in k, k))
    whole = next((k for k in names if "module2_whole" in k), names[0])
    overlay = cv2.addWeighted(image, 1 - alpha, heat_map(maps[whole], size), alpha, 0)
    return np.hstack([image, overlay] + [heat_map(maps[k], size) for k in names])


def save_attention_overlay(path, image_bgr, maps, alpha=0.5):
    os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
    cv2.imwrite(os.fspath(path), attention_overlay(image_bgr, maps, alpha))


def ranking_grid(query, gallery, matches, size=(128, 64), border=4):
    """Query then its ranked gallery images, green border for a true match, red otherwise.

    Args:
        query: image path or BGR array. gallery: list of paths or arrays.
        matches: booleans, one per gallery image.
        size: (H, W) each image is resized to.
        border: border width in pixels.

    Returns:
        (H + 2·border, (1 + k)·(W + 2·border), 3) uint8 BGR image.
    """
    if len(gallery) != len(matches):
        raise ValueError(f"{len(gallery)} gallery images but {len(matches)} match flags.")

    def tile(img, colour):
        img = read_image(img) if isinstance(img, (str, os.PathLike)) else np.asarray(img, np.uint8)
        img = cv2.resize(img, (size[1], size[0]))
        return cv2.copyMakeBorder(img, border, border, border, border, cv2.BORDER_CONSTANT, value=colour)

    tiles = [tile(query, GREY)] + [tile(g, GREEN if m else RED) for g, m in zip(gallery, matches)]
    return np.hstack(tiles)


def save_ranking_grids(out_dir, distmat, query_samples, gallery_samples, topk=10, max_queries=20):
    """Writes one ranking grid per query (the first `max_queries`), protocol-filtered.

    Gallery entries with the query's identity and camera are skipped, as in
    the evaluation. Samples are `(path, pid, camid)`. Returns the written paths.
    """
    os.makedirs(out_dir, exist_ok=True)
    g_pids = np.array([s[1] for s in gallery_samples])
    g_cams = np.array([s[2] for s in gallery_samples])
    written = []
    for i, (q_path, q_pid, q_cam) in enumerate(query_samples[:max_queries]):
        order = np.argsort(distmat[i], kind="stable")
        order = order[~((g_pids[order] == q_pid) & (g_cams[order] == q_cam))][:topk]
        grid = ranking_grid(q_path, [gallery_samples[j][0] for j in order], g_pids[order] == q_pid)
        path = os.path.join(out_dir, f"ranking_{i:03d}_{os.path.splitext(os.path.basename(q_path))[0]}.png")
        cv2.imwrite(path, grid)
        written.append(path)
    return written
