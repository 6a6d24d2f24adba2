"""Body masks: mask files → whole-body and body-part soft targets.

Masks live in a folder mirroring the image folder (same relative path and
stem, `.png`). Two formats:

- `"lip"`: single-channel PNGs of LIP's 20 labels (any LIP-label human
  parser, e.g. JPPNet / SCHP), grouped into body parts
  (`keras_mmga.data.lip_groups`: `PART_GROUPS`, `dress_group`,
  `label_groups`);
- `"binary"`: 0/255 (or 0/1) whole-body masks, which carry no parts.

This module reads the files (`read_mask`, `to_label_map`, `mask_path_for`)
and makes the targets of many images (`load_targets`): the binary targets of
each mask (`binary_masks`, in `lip_groups`; channel 0 the whole body, then
the parts, the halves or copies of the whole, by mode) area-averaged to the
attention-map size (image / 16), giving soft values in [0, 1] (`reduce_to`).
The label tables, part groups and grouping functions of `lip_groups` are
re-exported here, so `keras_mmga.data.masks.PART_GROUPS` and the rest keep
working.
"""

import json
import os
import warnings

import cv2
import numpy as np

# Re-exported: these were defined here before the split, and callers use
# `keras_mmga.data.masks.<name>`.
from keras_mmga.data.lip_groups import (  # noqa: F401
    BODY_LABELS,
    BOTTOM_LABELS,
    DEFAULT_PARTS,
    DRESS_GROUPS,
    DRESS_LABELS,
    LIP_LABELS,
    MASK_FORMATS,
    MASK_MODES,
    PART_GROUPS,
    UPPER_LABELS,
    _check_parts_mode,
    binary_masks,
    check_grouping,
    check_parts,
    group_label_map,
    split_halves,
    target_channels,
)
from keras_mmga.image_io import image_shape
from keras_mmga.progress import Progress

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Signatures of image formats a mask is sometimes saved in by mistake.
_OTHER_SIGNATURES = {
    b"\xff\xd8": "JPEG",
    b"BM": "BMP",
    b"GIF8": "GIF",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
    b"RIFF": "WebP",
}


class MaskFormatError(ValueError):
    """A mask file that exists but is not usable as a mask (an error also with `missing_masks="ignore"`)."""


def reduce_to(masks, size):
    """Area-averages (H, W, C) binary masks to `size = (h, w)`: soft targets in [0, 1]."""
    h, w = size
    masks = np.asarray(masks, "float32")
    reduced = cv2.resize(masks, (w, h), interpolation=cv2.INTER_AREA)
    # cv2 drops a single channel's axis: keep (h, w, C) for any C.
    return np.clip(reduced.reshape((h, w) + masks.shape[2:]), 0.0, 1.0)


def read_mask(path):
    """Reads a mask PNG as stored (2-D, or 3-D for colour files); errors name the file.

    Raises `FileNotFoundError` for a missing file and `ValueError` for one
    that cannot be decoded: the two cases `missing_masks="ignore"` skips. A
    file in another image format (a JPEG saved as `.png`: lossy compression
    blurs the label ids into values no parser wrote) is a `MaskFormatError`,
    which is never skipped.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Mask not found: {path!r}.")
    with open(path, "rb") as f:
        head = f.read(8)
    if head and not head.startswith(_PNG_SIGNATURE):
        kind = next((name for sig, name in _OTHER_SIGNATURES.items() if head.startswith(sig)), None)
        if kind:
            lossy = " JPEG is lossy: its compression changes the label ids." if kind == "JPEG" else ""
            raise MaskFormatError(
                f"Mask {path!r} is a {kind} file, not a PNG (only its name ends in .png).{lossy} "
                "Save the masks as PNG label maps (e.g. cv2.imwrite('mask.png', labels) with uint8 labels)."
            )
    mask = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if mask is None:
        raise ValueError(f"Cannot decode mask {path!r} (expected a PNG of label ids).")
    return mask


def to_label_map(mask, path=""):
    """The (H, W) label map of a decoded mask; colour masks are an error naming `path`."""
    if mask.ndim == 3:
        # Some tools save label maps as 3 identical channels.
        if not all(np.array_equal(mask[..., 0], mask[..., c]) for c in range(1, mask.shape[-1])):
            raise ValueError(
                f"Mask {path!r} has colour channels: expected a single-channel map of label ids "
                "(palette or colour-coded parsing PNGs must be converted to 8-bit label indices)."
            )
        mask = mask[..., 0]
    return mask


def mask_path_for(image_path, image_root, mask_root):
    """The mask of an image: same path relative to the roots, suffix `.png`."""
    rel = os.path.relpath(os.fspath(image_path), os.fspath(image_root))
    if rel.startswith(".."):
        raise ValueError(f"Image {image_path!r} is not under the image root {image_root!r}.")
    return os.path.join(os.fspath(mask_root), os.path.splitext(rel)[0] + ".png")


def absence_path_for(mask_path):
    """The absence sidecar of a mask: the mask's path with suffix `.json` (docs/MASKS.md)."""
    return os.path.splitext(os.fspath(mask_path))[0] + ".json"


def read_absence(mask_path):
    """`(absent, labels)` LIP-id sets of a mask's sidecar, or None when it has none.

    The sidecar `{"absent": [ids], "labels": [ids]}` says which parts were out
    of view (`absent`) among the labels its parser writes (`labels`; all 1..19
    when left out). A malformed sidecar is an error naming the file.
    """
    path = absence_path_for(mask_path)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        absent = {int(v) for v in data["absent"]}
        labels = {int(v) for v in data.get("labels", BODY_LABELS)}
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise MaskFormatError(
            f'Absence sidecar {path!r} is not readable as {{"absent": [LIP ids], "labels": [LIP ids]}}: '
            f"{type(err).__name__}: {err}."
        ) from None
    if not absent <= set(BODY_LABELS) or not labels <= set(BODY_LABELS):
        raise MaskFormatError(f"Absence sidecar {path!r} holds ids outside LIP's body labels 1..19.")
    return absent, labels


def channel_weights(absence, groups):
    """(1 + K,) weights of one mask: 0 for a part whose labels (those the parser writes) are all absent.

    Args:
        absence: `read_absence`'s `(absent, labels)`, or None (all parts in view).
        groups: the LIP labels of each part (`check_grouping`), in channel order.

    The whole (channel 0) always has weight 1: what is out of view is outside
    the crop, so the in-view whole mask is complete.
    """
    weights = np.ones(1 + len(groups), "float32")
    if absence is None:
        return weights
    absent, labels = absence
    for k, group in enumerate(groups):
        written = set(group) & labels
        if written and written <= absent:
            weights[1 + k] = 0.0
    return weights


def _mask_problem(mask, image_path, mask_path):
    """Why a decoded mask cannot be its image's target (None when it can).

    It must cover the image: the same size, or the same shape scaled (within
    1%: a mask made at another resolution). And it must show a person: an
    all-background mask would teach the whole-body map to be empty.
    """
    image = image_shape(image_path)
    if image is not None and tuple(mask.shape[:2]) != tuple(image):
        (mh, mw), (ih, iw) = mask.shape[:2], image
        if abs(mh * iw - mw * ih) > 0.01 * max(mh * iw, mw * ih):
            return (
                f"Mask {mask_path!r} is {mw}x{mh} pixels (WxH) but its image {image_path!r} is {iw}x{ih}: "
                "the mask belongs to another image or crop (masks must mirror the images, same size)."
            )
    if not np.any(mask):
        return (
            f"Mask {mask_path!r} is all background (label 0): no body to supervise the attention with "
            "(missing_masks='ignore' gives such images weight 0)."
        )
    return None


def load_targets(
    image_paths,
    image_root,
    mask_root,
    size,
    mode="parts",
    mask_format="lip",
    dress_group="upper",
    missing="error",
    label_groups=None,
    verbose=False,
    parts=None,
    part_weights=None,
):
    """Mask targets of many images, computed once: `(targets (N, h, w, C), weights (N,) or (N, C))`.

    Args:
        image_paths: image files under `image_root`.
        image_root, mask_root: the mirrored folder roots.
        size: `(h, w)` of the attention maps (input size / 16).
        mode, mask_format, dress_group, label_groups, parts: see
            `binary_masks`; C = 1 + len(parts) in mode `"parts"` (3 by
            default), 3 in the other modes.
        missing: `"error"` (default) raises on a missing or unreadable mask,
            naming the file; `"ignore"` gives that image weight 0 (it adds
            nothing to the attention loss) and an all-zero placeholder, with
            a warning giving the count. A `mask_root` that does not exist, or
            in which not one image has a mask, is an error also with
            `"ignore"`: the attention loss would vanish (usually a wrong path).
        verbose: show progress (count, masks/s, time left) on stderr.
        part_weights: per-channel weights `(N, C)` from the masks' absence
            sidecars (`read_absence`): a part out of view gets weight 0 for
            that image, its other channels keep theirs. None (default): `(N, C)`
            when any mask has a sidecar (mode `"parts"`, LIP masks), else
            `(N,)`; True: always `(N, C)`; False: `(N,)`, sidecars not read.

    Example:
    ```python
    targets, weights = load_targets(paths, "Market/", "Market-masks/", (24, 8))
    ```
    """
    if missing not in ("error", "ignore"):
        raise ValueError(f"missing must be 'error' or 'ignore', got {missing!r}.")
    # Format problems (wrong format or mode for the files) are errors even
    # with missing="ignore": they would silently drop every mask.
    _check_parts_mode(parts, mode, "mode")
    check_grouping(dress_group, label_groups, parts=parts)
    groups = check_grouping(dress_group, label_groups, parts=parts) if mode == "parts" else ()
    channels = target_channels(mode, parts)
    targets = np.zeros((len(image_paths), size[0], size[1], channels), "float32")
    weights = np.ones(len(image_paths), "float32")
    per_channel = np.ones((len(image_paths), channels), "float32")
    read_sidecars = part_weights is not False and mode == "parts" and mask_format == "lip"
    any_sidecar = False
    if not os.path.isdir(os.fspath(mask_root)):
        raise FileNotFoundError(f"Mask root {os.fspath(mask_root)!r} does not exist.")
    with Progress(len(image_paths), "masks", label=f"mask targets ({mode})", verbose=verbose) as bar:
        for i, image_path in enumerate(image_paths):
            bar.update(1)
            path = mask_path_for(image_path, image_root, mask_root)
            try:
                mask = read_mask(path)
            except MaskFormatError:
                raise
            except (FileNotFoundError, ValueError):
                if missing == "error":
                    raise
                weights[i] = 0.0
                continue
            if read_sidecars:
                absence = read_absence(path)
                any_sidecar = any_sidecar or absence is not None
                per_channel[i] = channel_weights(absence, groups)
            mask = to_label_map(mask, path)
            problem = _mask_problem(mask, image_path, path)
            if problem is not None:
                # A mask of another image's size, or without a body, is a wrong target, not a missing one.
                if missing == "error":
                    raise ValueError(problem)
                weights[i] = 0.0
                continue
            targets[i] = reduce_to(binary_masks(mask, mode, mask_format, dress_group, label_groups, path, parts), size)
    lacking = int(np.sum(weights == 0))
    if lacking and lacking == len(image_paths):
        first = mask_path_for(image_paths[0], image_root, mask_root)
        raise ValueError(
            f"None of the {lacking} images has a mask under {os.fspath(mask_root)!r} (e.g. {first!r}): with "
            "missing_masks='ignore' the attention loss would be exactly 0. Check mask_root and image_root "
            "(masks mirror the image folder), or train a variant without mask supervision."
        )
    if lacking:
        warnings.warn(
            f"{lacking} of {len(image_paths)} images have no usable mask under "
            f"{os.fspath(mask_root)!r}; they add nothing to the attention loss (weight 0).",
            stacklevel=2,
        )
    if part_weights or (part_weights is None and any_sidecar):
        return targets, per_channel * weights[:, None]
    return targets, weights
