"""Every name table, default and value rule of keras-mmga, in one module without Keras.

The model (`keras_mmga.models`), the data pipeline (`keras_mmga.data`), the
engine's `TrainConfig` and the `keras-mmga` command read their names,
defaults and checks from here, so a value is declared once and `--help`
shows it without importing TensorFlow. Only the standard library is used.

Tables: `VARIANTS` (Table 1 of the paper), `DEFAULT_PARTS` and the one
part-name rule (`check_part_name`), `MASK_MODES`, `MASK_FORMATS`,
`DRESS_GROUPS`, `EPOCH_DEFINITIONS`, `STRATEGIES`, `DATASETS`, `BACKBONES` and
`COMPILE_DEFAULTS` (the paper's §4.2 settings of `MMGA.compile`). The named
budgets over those defaults (`RECIPES`, "recipe" in `--recipe`) live with the
`TrainConfig` fields they change, in `keras_mmga.engine.config`.

Example:
```python
from keras_mmga import settings

settings.resolve_parts("mmga", "head,torso")   # ('head', 'torso')
settings.COMPILE_DEFAULTS["learning_rate"]     # 0.1
```
"""

import math
import re

# ------------------------------------------------------------------ variants
# variant -> attention modules, part branches in module 2, mask supervision, mask targets
VARIANTS = {
    "baseline": dict(attention=False, parts=False, supervised=False, mask_mode=None),
    "baseline_att": dict(attention=True, parts=False, supervised=False, mask_mode=None),
    "wmga": dict(attention=True, parts=False, supervised=True, mask_mode="whole"),
    "dmga": dict(attention=True, parts=True, supervised=True, mask_mode="halves"),
    "mmga": dict(attention=True, parts=True, supervised=True, mask_mode="parts"),
}
# In the paper's table order, for parsers that offer them.
VARIANT_NAMES = tuple(VARIANTS)

# --------------------------------------------------------------------- parts
# The paper's two parts. DMGA's are the halves of the whole mask, MMGA's the
# parser's upper / bottom body; only MMGA takes other parts.
DEFAULT_PARTS = ("upper", "bottom")
# Part names become attention-map keys ("module2_<part>"), layer names and
# comma-separated CLI values: lower-case identifiers, and never channel 0's name.
PART_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")

# --------------------------------------------------------------------- masks
# What the masks supervise: parsed parts (mmga), halves of the whole mask (dmga), the whole (wmga).
MASK_MODES = ("parts", "halves", "whole")
# How a mask file is read: LIP label maps, or binary person masks.
MASK_FORMATS = ("lip", "binary")
# Which part group dress and jumpsuit join.
DRESS_GROUPS = ("upper", "bottom", "none")

# ---------------------------------------------------------------------- runs
# What one epoch is: every training identity once (K images each), or every
# training image about once. See `keras_mmga.data.PKSampler`.
EPOCH_DEFINITIONS = ("identities", "images")
STRATEGIES = ("one", "mirrored", "multiworker")
DATASETS = ("market1501", "dukemtmcreid")

# The paper's training settings (§4.2): exactly the keywords of `MMGA.compile`.
COMPILE_DEFAULTS = dict(
    learning_rate=0.1,
    backbone_lr_scale=0.5,
    momentum=0.9,
    weight_decay=5e-4,
    lr_decay_epochs=90,
    lr_decay_rate=0.5,
    steps_per_epoch=None,
    triplet_margin=0.3,
    triplet_weight=2.0,
    attention_weight=0.1,
    part_attention_weight=0.5,
    cross_replica_triplet=True,
)
# The backbone layouts (`keras_mmga.models.backbone`) and the in-graph preprocessing their
# published ImageNet weights expect. The paper started from torchvision's ResNet50 (v1.5).
BACKBONES = ("resnet50", "resnet50_v1.5")
BACKBONE_PREPROCESSING = {"resnet50": "caffe", "resnet50_v1.5": "torch"}

# compile() settings that only build the default optimizer ("sgd").
OPTIMIZER_SETTINGS = (
    "learning_rate",
    "backbone_lr_scale",
    "momentum",
    "weight_decay",
    "lr_decay_epochs",
    "lr_decay_rate",
    "steps_per_epoch",
)


# -------------------------------------------------------------------- checks
def check_variant(variant):
    """The `VARIANTS` entry of `variant`, or a `ValueError` listing the variants."""
    if variant not in VARIANTS:
        raise ValueError(f"Unknown variant {variant!r}; expected one of {sorted(VARIANTS)}.")
    return VARIANTS[variant]


def check_part_name(name, where="parts"):
    """`name` if it is a part name (`PART_NAME`, not "whole"), else a `ValueError` naming `where`."""
    if not isinstance(name, str) or not PART_NAME.match(name):
        raise ValueError(f"Part names must be lower-case identifiers (letters, digits, '_'), got {name!r} in {where}.")
    if name == "whole":
        raise ValueError(f"'whole' is mask channel 0 (the whole body), not a part: leave it out of {where}.")
    return name


def resolve_parts(variant, parts=None):
    """The part branches of `variant`: a tuple of names (empty without parts).

    `parts=None` gives the paper's `("upper", "bottom")` for dmga and mmga.
    Only mmga takes other parts: its part maps are supervised by parsed part
    masks (see `keras_mmga.data.PART_GROUPS`), where dmga's are fixed halves
    of the whole mask. A string is split at commas.
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
    for name in parts:
        check_part_name(name, f"parts={list(parts)}")
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


def check_epoch(epoch):
    """`epoch` if it is one of `EPOCH_DEFINITIONS`, else a `ValueError` naming them."""
    if epoch not in EPOCH_DEFINITIONS:
        raise ValueError(f"epoch must be one of {EPOCH_DEFINITIONS} (what one epoch is), got {epoch!r}.")
    return epoch


# Checks of single settings (of a `TrainConfig`): each raises a `ValueError`
# naming the setting, what it needs and what came.
def check_config_parts(parts, variant):
    """A non-empty sequence of distinct names, for variant mmga; the names themselves are the data side's."""
    if (
        isinstance(parts, str)
        or not isinstance(parts, (tuple, list))
        or not parts
        or not all(isinstance(p, str) and p for p in parts)
    ):
        raise ValueError(
            f"parts must be a non-empty tuple of part-group names (e.g. ('head', 'torso', 'legs', "
            f"'feet')) or None, got {parts!r}."
        )
    repeated = sorted({p for p in parts if list(parts).count(p) > 1})
    if repeated:
        raise ValueError(f"parts names each part group once; {repeated} appear more than once in {tuple(parts)!r}.")
    if variant != "mmga":
        raise ValueError(
            f"parts is a setting of variant 'mmga' (its part branches); variant {variant!r} has "
            f"{'the fixed halves upper/bottom' if variant == 'dmga' else 'no parts'}: leave parts None."
        )


def is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def choice(config, name, choices):
    """`getattr(config, name)` is one of `choices`, or a `ValueError` naming them."""
    value = getattr(config, name)
    if value not in choices or isinstance(value, bool):
        raise ValueError(f"{name} must be one of {choices}, got {value!r}.")


def number(config, name, low=None, high=None, low_open=False, high_open=False):
    """A real number in the given range, or a `ValueError` naming the setting and the range."""
    value = getattr(config, name)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        lo = "" if low is None else ("(" if low_open else "[") + f"{low:g}"
        hi = "∞)" if high is None else f"{high:g}" + (")" if high_open else "]")
        raise ValueError(f"{name} must be a finite number in {lo}, {hi}, got {value!r}.")
