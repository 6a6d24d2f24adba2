"""LIP label groups: a human-parsing label map → binary whole-body and part masks.

The tables of LIP's 20 labels, the named part groups, checking a grouping
(`check_parts`, `check_grouping`) and turning one decoded mask into
full-resolution binary targets (`group_label_map`, `split_halves`,
`binary_masks`). Reading mask files and area-averaging the targets to the
attention-map size is `keras_mmga.data.masks`, which re-exports every name
here.

Targets are (H, W, C), channel 0 the whole body:

| mode | for | C | channel 0 | channels 1.. |
|---|---|---|---|---|
| `"parts"` | mmga | 1 + K | whole body | one per part of `parts` (default upper, bottom) |
| `"halves"` | dmga | 3 | whole | whole ∩ top rows, whole ∩ bottom rows |
| `"whole"` | wmga | 3 | whole | whole, whole (unused) |

(split at the image's middle row). WMGA supervises only the whole channel;
the other two are copies so every variant sees the same target shape.

Named part groups (`PART_GROUPS`; `parts=` picks K of them, in order):

| group | LIP labels |
|---|---|
| `head` | 1 hat, 2 hair, 4 sunglasses, 13 face |
| `torso` | 3 glove, 5 upper-clothes, 7 coat, 11 scarf, 14/15 arms (+ 6 dress, 10 jumpsuit) |
| `upper` | head ∪ torso (the paper's upper body, the default with bottom) |
| `legs` | 9 pants, 12 skirt, 16/17 legs |
| `feet` | 8 socks, 18/19 shoes |
| `bottom` | legs ∪ feet |

Dress and jumpsuit cover both halves: `dress_group="upper"` (default) puts
them in torso and upper, `"bottom"` in legs and bottom, `"none"` in the whole
mask only. The whole mask is every LIP body label (1..19), whatever the
parts. `label_groups={name: labels}` gives custom groups (any name listed in
`parts`) or replaces a named group's labels; with it the whole mask is the
union of the parts' groups (other labels are background). A LIP label
belongs to one part at most.
"""

from types import MappingProxyType

import numpy as np

from keras_mmga.settings import DEFAULT_PARTS, DRESS_GROUPS, MASK_FORMATS, MASK_MODES, check_part_name

# LIP's 20 labels (JPPNet, the parser the paper uses), grouped as in SPEC.md.
LIP_LABELS = (
    "background",
    "hat",
    "hair",
    "glove",
    "sunglasses",
    "upper_clothes",
    "dress",
    "coat",
    "socks",
    "pants",
    "jumpsuit",
    "scarf",
    "skirt",
    "face",
    "left_arm",
    "right_arm",
    "left_leg",
    "right_leg",
    "left_shoe",
    "right_shoe",
)
UPPER_LABELS = (1, 2, 3, 4, 5, 7, 11, 13, 14, 15)
BOTTOM_LABELS = (8, 9, 12, 16, 17, 18, 19)
# Dress and jumpsuit cover both halves; the paper's grouping puts them with
# the upper body (`dress_group` moves them).
DRESS_LABELS = (6, 10)
# Every LIP label but background: the whole body, whatever the parts.
BODY_LABELS = tuple(range(1, len(LIP_LABELS)))

# Named part groups, without dress / jumpsuit (`dress_group` adds them).
# Read-only: a change here would silently change every model's targets.
PART_GROUPS = MappingProxyType(
    {
        "head": (1, 2, 4, 13),
        "torso": (3, 5, 7, 11, 14, 15),
        "upper": UPPER_LABELS,
        "legs": (9, 12, 16, 17),
        "feet": (8, 18, 19),
        "bottom": BOTTOM_LABELS,
    }
)
# The groups dress and jumpsuit join: those containing the torso ("upper") or the legs ("bottom").
_DRESS_PARTS = {"upper": ("torso", "upper"), "bottom": ("legs", "bottom"), "none": ()}


def _names(names):
    """'a', 'a' and 'b', 'a', 'b' and 'c': names for messages."""
    quoted = [repr(n) for n in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def check_parts(parts=None, label_groups=None):
    """`parts` as a tuple of part-group names (None: `("upper", "bottom")`).

    Raises `ValueError` for a bare string or an empty sequence, a name that is
    not an identifier or is "whole" (channel 0), a duplicate name, or a name
    that is neither in `PART_GROUPS` nor a key of `label_groups` (naming it
    and listing the known groups).

    Example:
    ```python
    check_parts(["head", "torso"])
    ```
    """
    if parts is None:
        return DEFAULT_PARTS
    if isinstance(parts, (str, bytes)) or not hasattr(parts, "__iter__"):
        raise ValueError(f"parts must be a sequence of part-group names such as ('head', 'torso'), got {parts!r}.")
    parts = tuple(parts)
    if not parts:
        raise ValueError(f"parts must name at least one part group (known: {', '.join(PART_GROUPS)}), got ().")
    for name in parts:
        check_part_name(name, f"parts={parts!r}")
    duplicates = sorted({name for name in parts if parts.count(name) > 1})
    if duplicates:
        raise ValueError(f"parts names {_names(duplicates)} more than once, got {parts!r}: each part is one channel.")
    custom = label_groups if isinstance(label_groups, dict) else {}
    for name in parts:
        if name not in PART_GROUPS and name not in custom:
            raise ValueError(
                f"Unknown part group {name!r} in parts: the known groups are {', '.join(PART_GROUPS)} "
                "(keras_mmga.data.masks.PART_GROUPS); a custom group needs its LIP labels in label_groups."
            )
    return parts


def _check_labels(key, labels):
    if isinstance(labels, (int, np.integer)) and not isinstance(labels, bool):
        labels = (labels,)
    if isinstance(labels, (str, bytes)) or not hasattr(labels, "__iter__"):
        raise ValueError(f"label_groups[{key!r}] must be LIP labels (ints 0..{len(LIP_LABELS) - 1}), got {labels!r}.")
    labels = tuple(labels)
    bad = [
        v
        for v in labels
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 0 <= int(v) < len(LIP_LABELS)
    ]
    if bad:
        raise ValueError(f"label_groups[{key!r}] holds {bad}: LIP labels are ints 0..{len(LIP_LABELS) - 1}.")
    return tuple(int(v) for v in labels)


def check_grouping(dress_group="upper", label_groups=None, allow_empty=True, parts=None):
    """Validates a LIP grouping; returns the LIP labels of each part, in order.

    With the default `parts` (None: upper, bottom) that is `(upper labels,
    bottom labels)`. A part takes `label_groups[part]` when given, otherwise
    `PART_GROUPS[part]` with dress and jumpsuit added as `dress_group` says.

    Raises `ValueError` naming the problem: an unknown `dress_group`, a bad
    `parts` (see `check_parts`), `label_groups` keys that are not in `parts`,
    labels that are not ints in 0..19, a label in two parts, or (with
    `allow_empty=False`, as for MMGA's parts) an empty group: its attention
    target would be empty for every image, training that map towards nothing.
    """
    if dress_group not in DRESS_GROUPS:
        raise ValueError(f"dress_group must be one of {DRESS_GROUPS}, got {dress_group!r}.")
    if label_groups is not None and not isinstance(label_groups, dict):
        raise ValueError(
            "label_groups must be a dict of part name -> LIP labels, e.g. "
            f"{{'upper': labels, 'bottom': labels}}, got {label_groups!r}."
        )
    parts = check_parts(parts, label_groups)
    label_groups = label_groups or {}
    unknown = set(label_groups) - set(parts)
    if unknown:
        raise ValueError(
            f"label_groups keys must be {_names(parts)} (the parts), got {sorted(unknown, key=str)}: "
            "a custom group must also be named in parts."
        )
    groups = []
    for name in parts:
        if name in label_groups:
            labels = _check_labels(name, label_groups[name])
            if not labels and not allow_empty:
                raise ValueError(
                    f"label_groups[{name!r}] is empty: every {name}-body target would be empty, training that "
                    "attention map towards nothing. Give it the LIP labels of that part of the body."
                )
        else:
            labels = PART_GROUPS[name] + (DRESS_LABELS if name in _DRESS_PARTS[dress_group] else ())
        groups.append(labels)
    for i, first in enumerate(groups):
        for j in range(i + 1, len(groups)):
            both = set(first) & set(groups[j])
            if both:
                raise ValueError(
                    f"labels {sorted(both)} are in both the {parts[i]} and {parts[j]} groups: "
                    "a LIP label belongs to one part at most."
                )
    return tuple(groups)


def target_channels(mode="parts", parts=None):
    """Channels of a mode's targets: 1 + len(parts) for `"parts"`, 3 for `"halves"` and `"whole"`.

    `parts` is counted, not checked (`check_grouping` does that, knowing the custom groups).
    """
    return 1 + len(DEFAULT_PARTS if parts is None else tuple(parts)) if mode == "parts" else 3


def group_label_map(label_map, dress_group="upper", label_groups=None, parts=None):
    """Binary (H, W, 1 + K) float32 masks (whole, part 1, ..., part K) of a LIP label map.

    Args:
        label_map: (H, W) integer array of LIP labels 0..19.
        dress_group: `"upper"` (paper, default), `"bottom"` or `"none"`:
            where dress (6) and jumpsuit (10) go (torso and upper, legs and
            bottom, or the whole mask only).
        label_groups: optional dict `{part: labels}` giving a part's labels
            instead of `PART_GROUPS` (then `dress_group` does not touch that
            part). With it, the whole mask is the union of the parts' groups:
            labels outside every group are background.
        parts: part-group names (default `("upper", "bottom")`: channels
            whole, upper, bottom).

    Example:
    ```python
    group_label_map(np.array([[2], [9]]))[..., 1]  # hair is upper, pants are not
    group_label_map(np.array([[2], [9]]), parts=("head", "legs"))[:, 0]
    ```
    """
    label_map = np.asarray(label_map)
    groups = check_grouping(dress_group, label_groups, parts=parts)
    channels = [np.isin(label_map, labels) for labels in groups]
    if label_groups is not None:
        whole = np.logical_or.reduce(channels)
    else:
        whole = np.isin(label_map, BODY_LABELS)
    return np.stack([whole] + channels, axis=-1).astype("float32")


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


def binary_masks(mask, mode="parts", mask_format="lip", dress_group="upper", label_groups=None, path=None, parts=None):
    """Full-resolution binary targets (H, W, C) of one mask image.

    Args:
        mask: (H, W) array: LIP labels 0..19, or a 0/255 (or 0/1) whole-body mask.
        mode: `"parts"` (whole and each part: MMGA, C = 1 + K), `"halves"`
            (whole split at the middle row: DMGA, C = 3) or `"whole"` (WMGA:
            all three channels are the whole mask; only channel 0 is
            supervised).
        mask_format: `"lip"` or `"binary"`. Binary masks carry no parts, so
            they only support `"halves"` and `"whole"`; a 0/1 map given as
            `"lip"` in `"parts"` mode is an error (it would be all "hat").
        dress_group, label_groups: see `group_label_map`.
        path: the mask's file, named in errors.
        parts: part-group names for mode `"parts"` (default `("upper",
            "bottom")`); other modes have fixed channels and refuse it.

    Example:
    ```python
    binary_masks(np.array([[5], [9]]))[..., 0]  # upper clothes, pants: whole body
    ```
    """
    if mode not in MASK_MODES:
        raise ValueError(f"mask mode must be one of {MASK_MODES}, got {mode!r}.")
    if mask_format not in MASK_FORMATS:
        raise ValueError(f"mask format must be one of {MASK_FORMATS}, got {mask_format!r}.")
    _check_parts_mode(parts, mode, "mode")
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
        # two-label parsing: check the named groups in "parts" mode.
        if mode == "parts" and label_groups is None and _looks_binary(mask):
            raise ValueError(
                f"Mask{where} holds only the values 0 and 1: a 0/1 whole-body mask, not a LIP label map "
                f"(read as LIP labels, every body pixel would be 'hat', {_as_hat(dress_group, parts)}). "
                "MMGA's parts need a LIP-label human parsing; for whole-body masks (0/1 or 0/255) use "
                "mask_format='binary' with the 'dmga' or 'wmga' variant."
            )
        grouped = group_label_map(mask, dress_group, label_groups, parts)
        if mode == "parts":
            return grouped
        whole = grouped[..., 0]
    if mode == "halves":
        return split_halves(whole)
    return np.repeat(whole[..., None], 3, axis=-1)


def _check_parts_mode(parts, mode, argument):
    """Refuses `parts` where the targets' channels are fixed (halves, whole, no masks)."""
    if parts is not None and mode != "parts":
        raise ValueError(
            f"parts={parts!r} needs {argument}='parts' (mmga's part masks), got {argument}={mode!r}: 'halves' "
            "(dmga) and 'whole' (wmga) have the fixed channels whole, upper, bottom. Leave parts as None."
        )


def _as_hat(dress_group, parts):
    """What a 0/1 map read as LIP labels (all 'hat') gives each part, for the error message."""
    parts = check_parts(parts)
    groups = check_grouping(dress_group, parts=parts)
    hat = [name for name, labels in zip(parts, groups) if 1 in labels]
    empty = [name for name in parts if name not in hat]
    where = f"all {' and '.join(hat)} body" if hat else "in no part"
    if not empty:
        return f"{where}: the part targets would only copy the whole mask"
    return f"{where}, and the {' and '.join(empty)} target{'s' if len(empty) > 1 else ''} would be empty"


def _looks_binary(label_map):
    """True when a map holds only labels 0 and 1, with some 1s: a 0/1 whole-body mask.

    A real LIP parsing never does: label 1 is "hat", and a person whose only
    visible part is a hat (no hair, face, clothes or limbs anywhere) is not a
    re-ID crop. An all-background map (junk images) stays valid.
    """
    # Mask PNGs are unsigned, so a maximum of 1 means values in {0, 1} with some 1s.
    return bool(label_map.size) and int(label_map.max()) == 1
