"""The five variants of the paper's Table 1, and the part branches of module 2.

One table says what each variant has; `MMGA`, `MMGABackbone`, the data
pipeline (through `MMGA.mask_mode`) and the engine read it from here.
"""

import re

# variant -> attention modules, part branches in module 2, mask supervision, mask targets
VARIANTS = {
    "baseline": dict(attention=False, parts=False, supervised=False, mask_mode=None),
    "baseline_att": dict(attention=True, parts=False, supervised=False, mask_mode=None),
    "wmga": dict(attention=True, parts=False, supervised=True, mask_mode="whole"),
    "dmga": dict(attention=True, parts=True, supervised=True, mask_mode="halves"),
    "mmga": dict(attention=True, parts=True, supervised=True, mask_mode="parts"),
}

# The paper's two parts. DMGA's are the halves of the whole mask, MMGA's the
# parser's upper / bottom body; only MMGA takes other parts (issue: finer parts).
DEFAULT_PARTS = ("upper", "bottom")

_PART_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def check_variant(variant):
    if variant not in VARIANTS:
        raise ValueError(f"Unknown variant {variant!r}; expected one of {sorted(VARIANTS)}.")
    return VARIANTS[variant]


def resolve_parts(variant, parts=None):
    """The part branches of `variant`: a tuple of names (empty without parts).

    `parts=None` gives the paper's `("upper", "bottom")` for dmga and mmga.
    Only mmga takes other parts: its part maps are supervised by parsed part
    masks (see `keras_mmga.data.masks.PART_GROUPS`), where dmga's are fixed
    halves of the whole mask.
    """
    spec = check_variant(variant)
    if parts is None:
        return DEFAULT_PARTS if spec["parts"] else ()
    if isinstance(parts, str):
        parts = tuple(p.strip() for p in parts.split(",") if p.strip())
    parts = tuple(parts)
    if not spec["parts"]:
        if parts:
            raise ValueError(
                f"parts={list(parts)} given for variant {variant!r}, which has only the whole branch: "
                "part branches are mmga's (or dmga's fixed halves)."
            )
        return ()
    if variant != "mmga" and parts != DEFAULT_PARTS:
        raise ValueError(
            f"parts={list(parts)} given for variant {variant!r}: its parts are the fixed halves "
            f"{list(DEFAULT_PARTS)} of the whole mask; other parts need variant 'mmga'."
        )
    if not parts:
        raise ValueError(f"parts must name at least one part for variant {variant!r}, got an empty list.")
    bad = [p for p in parts if not isinstance(p, str) or not _PART_NAME.match(p) or p == "whole"]
    if bad:
        raise ValueError(
            f"parts must be lower-case names (letters, digits, '_'), not 'whole'; got {bad} in {list(parts)}."
        )
    if len(set(parts)) != len(parts):
        raise ValueError(f"parts must not repeat a name; got {list(parts)}.")
    return parts


def split_dim(total, count):
    """`total` split into `count` near-equal ints, the remainder on the first ones."""
    if count <= 0:
        return []
    if total < count:
        raise ValueError(f"local_dim = {total} cannot be split over {count} parts (each needs ≥ 1 dimension).")
    base, extra = divmod(int(total), count)
    return [base + (1 if i < extra else 0) for i in range(count)]


def local_dim_of(local_dim, part_dim, count):
    """`local_dim` from the new argument or the older `part_dim` (per part); 1024 when neither is given."""
    if part_dim is not None and count:
        implied = int(part_dim) * count
        if local_dim is not None and int(local_dim) != implied:
            raise ValueError(
                f"part_dim={part_dim} × {count} parts = {implied} ≠ local_dim={local_dim}: give one of them."
            )
        return implied
    return 1024 if local_dim is None else int(local_dim)
