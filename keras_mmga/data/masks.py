"""Body masks: human-parsing label maps → whole / upper / bottom soft targets.

Masks live in a folder mirroring the image folder (same relative path and
stem, `.png`). Two formats:

- `"lip"`: single-channel PNGs of LIP's 20 labels (any LIP-label human
  parser, e.g. JPPNet / SCHP), grouped into upper and bottom body;
- `"binary"`: 0/255 (or 0/1) whole-body masks, which carry no parts.

Targets are always (h, w, 3), channels (whole, upper, bottom):

| mode | for | whole | upper | bottom |
|---|---|---|---|---|
| `"parts"` | mmga | upper ∪ bottom | LIP upper group | LIP bottom group |
| `"halves"` | dmga | whole | whole ∩ top rows | whole ∩ bottom rows |
| `"whole"` | wmga | whole | whole (unused) | whole (unused) |

(split at the image's middle row). WMGA supervises only the whole channel;
the other two are copies so every variant sees the same target shape.
Targets are area-averaged to the attention-map size (image / 16), giving
soft values in [0, 1].
"""

import os
import warnings

import cv2
import numpy as np

from keras_mmga.progress import Progress

# LIP's 20 labels (JPPNet, the parser the paper uses), grouped as in SPEC.md.
LIP_LABELS = (
    "background", "hat", "hair", "glove", "sunglasses", "upper_clothes", "dress", "coat",
    "socks", "pants", "jumpsuit", "scarf", "skirt", "face", "left_arm", "right_arm",
    "left_leg", "right_leg", "left_shoe", "right_shoe",
)
UPPER_LABELS = (1, 2, 3, 4, 5, 7, 11, 13, 14, 15)
BOTTOM_LABELS = (8, 9, 12, 16, 17, 18, 19)
# Dress and jumpsuit cover both halves; the paper's grouping puts them with
# the upper body (`dress_group` moves them).
DRESS_LABELS = (6, 10)

MASK_MODES = ("parts", "halves", "whole")
MASK_FORMATS = ("lip", "binary")
DRESS_GROUPS = ("upper", "bottom", "none")

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Signatures of image formats a mask is sometimes saved in by mistake.
_OTHER_SIGNATURES = {b"\xff\xd8": "JPEG", b"BM": "BMP", b"GIF8": "GIF", b"II*\x00": "TIFF", b"MM\x00*": "TIFF",
                     b"RIFF": "WebP"}


class MaskFormatError(ValueError):
    """A mask file that exists but is not usable as a mask (an error also with `missing_masks="ignore"`)."""


def check_grouping(dress_group="upper", label_groups=None, allow_empty=True):
    """Validates a LIP grouping; returns `(upper labels, bottom labels)`.

    Raises `ValueError` naming the problem: an unknown `dress_group`, keys
    other than "upper"/"bottom", labels that are not ints in 0..19, a label
    in both groups, or (with `allow_empty=False`, as for MMGA's parts) an
    empty group: its attention target would be empty for every image,
    training that map towards nothing.
    """
    if label_groups is None:
        if dress_group not in DRESS_GROUPS:
            raise ValueError(f"dress_group must be one of {DRESS_GROUPS}, got {dress_group!r}.")
        upper = UPPER_LABELS + (DRESS_LABELS if dress_group == "upper" else ())
        bottom = BOTTOM_LABELS + (DRESS_LABELS if dress_group == "bottom" else ())
        return upper, bottom
    if not isinstance(label_groups, dict):
        raise ValueError(f"label_groups must be a dict {{'upper': labels, 'bottom': labels}}, got {label_groups!r}.")
    unknown = set(label_groups) - {"upper", "bottom"}
    if unknown:
        raise ValueError(f"label_groups keys must be 'upper' and 'bottom', got {sorted(unknown)}.")
    groups = {}
    for key in ("upper", "bottom"):
        labels = label_groups.get(key, ())
        if isinstance(labels, (int, np.integer)):
            labels = (labels,)
        bad = [v for v in labels if isinstance(v, bool) or not isinstance(v, (int, np.integer))
               or not 0 <= int(v) < len(LIP_LABELS)]
        if bad:
            raise ValueError(f"label_groups[{key!r}] holds {bad}: LIP labels are ints 0..{len(LIP_LABELS) - 1}.")
        if not labels and not allow_empty:
            raise ValueError(
                f"label_groups[{key!r}] is empty: every {key}-body target would be empty, training that "
                "attention map towards nothing. Give it the LIP labels of that part of the body."
            )
        groups[key] = tuple(int(v) for v in labels)
    both = set(groups["upper"]) & set(groups["bottom"])
    if both:
        raise ValueError(f"labels {sorted(both)} are in both the upper and bottom groups.")
    return groups["upper"], groups["bottom"]


def group_label_map(label_map, dress_group="upper", label_groups=None):
    """Binary (H, W, 3) float32 masks (whole, upper, bottom) of a LIP label map.

    Args:
        label_map: (H, W) integer array of LIP labels 0..19.
        dress_group: `"upper"` (paper, default), `"bottom"` or `"none"`:
            where dress (6) and jumpsuit (10) go; with `"none"` they count
            only towards the whole mask.
        label_groups: optional dict `{"upper": labels, "bottom": labels}`
            replacing the SPEC's grouping entirely (then `dress_group` is
            ignored). Labels outside both groups are background.

    Example:
    >>> group_label_map(np.array([[2], [9]]))[..., 1]  # hair is upper, pants are not
    array([[1.], [0.]], dtype=float32)
    """
    label_map = np.asarray(label_map)
    upper, bottom = check_grouping(dress_group, label_groups)
    if label_groups is not None:
        up, down = np.isin(label_map, upper), np.isin(label_map, bottom)
        return np.stack([up | down, up, down], axis=-1).astype("float32")
    up = np.isin(label_map, upper)
    down = np.isin(label_map, bottom)
    whole = up | down | np.isin(label_map, DRESS_LABELS)
    return np.stack([whole, up, down], axis=-1).astype("float32")


def split_halves(whole):
    """DMGA targets: the whole mask and its parts above / below the middle row.

    The split is at the image's middle row (not the body's), as the paper's
    DMGA baseline does; with an odd height the middle row goes to the top.
    """
    whole = np.asarray(whole, "float32")
    middle = (whole.shape[0] + 1) // 2
    upper = whole.copy()
    upper[middle:] = 0
    bottom = whole.copy()
    bottom[:middle] = 0
    return np.stack([whole, upper, bottom], axis=-1)


def binary_masks(mask, mode="parts", mask_format="lip", dress_group="upper", label_groups=None, path=None):
    """Full-resolution binary targets (H, W, 3) of one mask image.

    Args:
        mask: (H, W) array: LIP labels 0..19, or a 0/255 (or 0/1) whole-body mask.
        mode: `"parts"` (whole, upper, bottom: MMGA), `"halves"` (whole split
            at the middle row: DMGA) or `"whole"` (WMGA: all three channels
            are the whole mask; only channel 0 is supervised).
        mask_format: `"lip"` or `"binary"`. Binary masks carry no parts, so
            they only support `"halves"` and `"whole"`; a 0/1 map given as
            `"lip"` in `"parts"` mode is an error (it would be all "hat").
        dress_group, label_groups: see `group_label_map`.
        path: the mask's file, named in errors.

    Example:
    >>> binary_masks(np.array([[5], [9]]))[..., 0]  # upper clothes, pants: whole body
    array([[1.], [1.]], dtype=float32)
    """
    if mode not in MASK_MODES:
        raise ValueError(f"mask mode must be one of {MASK_MODES}, got {mode!r}.")
    if mask_format not in MASK_FORMATS:
        raise ValueError(f"mask format must be one of {MASK_FORMATS}, got {mask_format!r}.")
    mask = np.asarray(mask)
    where = f" in {path!r}" if path else ""
    if mask.ndim != 2:
        raise ValueError(f"Expected a single-channel (H, W) mask{where}, got shape {mask.shape}.")
    if mask_format == "binary":
        if mode == "parts":
            raise ValueError("Binary whole-body masks have no parts: use mode 'halves' (dmga) or 'whole' (wmga).")
        # 0/255 masks may be anti-aliased; 0/1 masks are taken as they are.
        whole = (mask > (127 if mask.max(initial=0) > 1 else 0)).astype("float32")
    else:
        if mask.size and mask.max() >= len(LIP_LABELS):
            raise ValueError(
                f"LIP label maps hold labels 0..{len(LIP_LABELS) - 1}, found {int(mask.max())}{where}: "
                "for 0/255 whole-body masks use mask_format='binary'."
            )
        # Only the parts go wrong with a 0/1 mask read as LIP (the whole mask is
        # the same either way), and custom `label_groups` may make 0/1 a real
        # two-label parsing: check the paper's grouping in "parts" mode.
        if mode == "parts" and label_groups is None and _looks_binary(mask):
            raise ValueError(
                f"Mask{where} holds only the values 0 and 1: a 0/1 whole-body mask, not a LIP label map "
                "(read as LIP labels, every body pixel would be 'hat', all upper body, and the bottom "
                "target would be empty). MMGA's parts need a LIP-label human parsing; for whole-body "
                "masks (0/1 or 0/255) use mask_format='binary' with the 'dmga' or 'wmga' variant."
            )
        grouped = group_label_map(mask, dress_group, label_groups)
        if mode == "parts":
            return grouped
        whole = grouped[..., 0]
    if mode == "halves":
        return split_halves(whole)
    return np.repeat(whole[..., None], 3, axis=-1)


def _looks_binary(label_map):
    """True when a map holds only labels 0 and 1, with some 1s: a 0/1 whole-body mask.

    A real LIP parsing never does: label 1 is "hat", and a person whose only
    visible part is a hat (no hair, face, clothes or limbs anywhere) is not a
    re-ID crop. An all-background map (junk images) stays valid.
    """
    # Mask PNGs are unsigned, so a maximum of 1 means values in {0, 1} with some 1s.
    return bool(label_map.size) and int(label_map.max()) == 1


def reduce_to(masks, size):
    """Area-averages (H, W, 3) binary masks to `size = (h, w)`: soft targets in [0, 1]."""
    h, w = size
    return np.clip(cv2.resize(np.asarray(masks, "float32"), (w, h), interpolation=cv2.INTER_AREA), 0.0, 1.0)


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


def load_targets(image_paths, image_root, mask_root, size, mode="parts", mask_format="lip",
                 dress_group="upper", missing="error", label_groups=None, verbose=False):
    """Mask targets of many images, computed once: `(targets (N, h, w, 3), weights (N,))`.

    Args:
        image_paths: image files under `image_root`.
        image_root, mask_root: the mirrored folder roots.
        size: `(h, w)` of the attention maps (input size / 16).
        mode, mask_format, dress_group, label_groups: see `binary_masks`.
        missing: `"error"` (default) raises on a missing or unreadable mask,
            naming the file; `"ignore"` gives that image weight 0 (it adds
            nothing to the attention loss) and an all-zero placeholder, with
            a warning giving the count. A `mask_root` that does not exist, or
            in which not one image has a mask, is an error also with
            `"ignore"`: the attention loss would vanish (usually a wrong path).
        verbose: show progress (count, masks/s, time left) on stderr.

    Example:
    >>> targets, weights = load_targets(paths, "Market/", "Market-masks/", (24, 8))
    """
    if missing not in ("error", "ignore"):
        raise ValueError(f"missing must be 'error' or 'ignore', got {missing!r}.")
    # Format problems (wrong format or mode for the files) are errors even
    # with missing="ignore": they would silently drop every mask.
    targets = np.zeros((len(image_paths), size[0], size[1], 3), "float32")
    weights = np.ones(len(image_paths), "float32")
    check_grouping(dress_group, label_groups)
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
            mask = to_label_map(mask, path)
            targets[i] = reduce_to(binary_masks(mask, mode, mask_format, dress_group, label_groups, path), size)
    lacking = int(np.sum(weights == 0))
    if lacking and lacking == len(image_paths):
        first = mask_path_for(image_paths[0], image_root, mask_root)
        raise ValueError(
            f"None of the {lacking} images has a mask under {os.fspath(mask_root)!r} (e.g. {first!r}): with "
            "missing_masks='ignore' the attention loss would be exactly 0. Check mask_root and image_root "
            "(masks mirror the image folder), or train a variant without mask supervision."
        )
    if lacking:
        warnings.warn(f"{lacking} of {len(image_paths)} images have no usable mask under "
                      f"{os.fspath(mask_root)!r}; they add nothing to the attention loss (weight 0).", stacklevel=2)
    return targets, weights
