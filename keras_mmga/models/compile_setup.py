"""What `MMGA.compile` sets up: the default optimizer, the split of its keywords, and checks of what it gets."""

import warnings

import keras

# The module, not its names (the import rule: keras_mmga.lazy).
from keras_mmga import optimizers

# The paper's defaults (§4.2): `MMGA.compile` takes exactly these keywords.
from keras_mmga.settings import COMPILE_DEFAULTS, OPTIMIZER_SETTINGS


def inner_optimizer(optimizer):
    """The optimizer inside a `LossScaleOptimizer` (mixed_float16), else itself."""
    return getattr(optimizer, "inner_optimizer", optimizer)


def default_optimizer(config):
    """`ParamGroupSGD` with the paper's momentum, L2 decay and epoch-step learning-rate decay."""
    schedule = optimizers.EpochStepDecay(
        config["learning_rate"],
        decay_epochs=config["lr_decay_epochs"],
        decay_rate=config["lr_decay_rate"],
        steps_per_epoch=config["steps_per_epoch"],
    )
    return optimizers.ParamGroupSGD(
        learning_rate=schedule, momentum=config["momentum"], weight_decay=config["weight_decay"], count_epochs=True
    )


def check_optimizer_settings_used(optimizer, kwargs):
    """Raises if `kwargs` set optimizer settings that `optimizer` would silently ignore.

    With `"sgd"` every setting builds the optimizer; a `ParamGroupSGD`
    instance takes only `backbone_lr_scale`; anything else takes none.
    """
    if isinstance(optimizer, str) and optimizer == "sgd":
        return
    usable = ("backbone_lr_scale",) if isinstance(inner_optimizer(optimizer), optimizers.ParamGroupSGD) else ()
    ignored = [k for k in OPTIMIZER_SETTINGS if k in kwargs and k not in usable]
    if ignored:
        name = optimizer if isinstance(optimizer, str) else type(inner_optimizer(optimizer)).__name__
        raise ValueError(
            f"compile() got {ignored} with optimizer {name!r}: these settings only build the default "
            "optimizer (optimizer='sgd'); an optimizer you pass keeps its own learning rate, momentum, "
            "weight decay and schedule. Set them on that optimizer, or drop optimizer= to use them"
            + (" (a ParamGroupSGD still takes backbone_lr_scale)." if not usable else ".")
        )


def check_loss_settings(kwargs, variant, mask_supervised, has_parts):
    """Refuses loss settings that would make a term vanish, be ignored, or train towards nonsense."""
    for key in (
        "triplet_margin",
        "triplet_weight",
        "attention_weight",
        "part_attention_weight",
        "learning_rate",
        "weight_decay",
        "lr_decay_rate",
    ):
        if key in kwargs and not float(kwargs[key]) >= 0:
            raise ValueError(f"compile(): {key} must be ≥ 0, got {kwargs[key]}.")
    if "learning_rate" in kwargs and not float(kwargs["learning_rate"]) > 0:
        raise ValueError(f"compile(): learning_rate must be > 0, got {kwargs['learning_rate']}.")
    if "lr_decay_rate" in kwargs and not float(kwargs["lr_decay_rate"]) > 0:
        raise ValueError(f"compile(): lr_decay_rate must be > 0, got {kwargs['lr_decay_rate']}.")
    # The paper's own values pass (the engine and saved configs carry them
    # for every variant); only a value the user changed would be ignored.
    changed = {
        k
        for k in ("attention_weight", "part_attention_weight")
        if k in kwargs and float(kwargs[k]) != COMPILE_DEFAULTS[k]
    }
    if not mask_supervised:
        given = sorted(changed)
        if given:
            raise ValueError(
                f"compile(): {given} set for variant {variant!r}, which has no mask supervision "
                "(no attention loss): use 'wmga', 'dmga' or 'mmga', or drop them."
            )
    elif not has_parts and "part_attention_weight" in changed:
        raise ValueError(
            f"compile(): part_attention_weight set for variant {variant!r}, which has no upper/bottom "
            "(part) maps: use 'dmga' or 'mmga', or drop it."
        )
    if (
        kwargs.get("triplet_weight", 1.0) == 0
        and kwargs.get("triplet_margin", COMPILE_DEFAULTS["triplet_margin"]) != COMPILE_DEFAULTS["triplet_margin"]
    ):
        raise ValueError("compile(): triplet_margin set with triplet_weight=0: the triplet term is off.")
    _warn_vanishing_terms(kwargs, variant, mask_supervised, has_parts)


def _warn_vanishing_terms(kwargs, variant, mask_supervised, has_parts):
    """Warns for a weight of 0 that switches a loss term off for the whole run (an ablation, or a slip)."""
    off = []
    if kwargs.get("triplet_weight") == 0:
        off.append("triplet_weight=0: no triplet loss")
    if mask_supervised and kwargs.get("attention_weight") == 0:
        off.append(f"attention_weight=0: no mask supervision, so {variant!r} trains as baseline_att does")
    elif mask_supervised and has_parts and kwargs.get("part_attention_weight") == 0:
        off.append("part_attention_weight=0: the part maps get no mask supervision")
    for what in off:
        warnings.warn(f"compile(): {what} for the whole run.", stacklevel=4)


def split_compile_kwargs(kwargs):
    """`(compile settings, other keras compile kwargs)`; refuses loss= / metrics=."""
    refused = sorted(set(kwargs) & {"loss", "metrics", "loss_weights"})
    if refused:
        raise ValueError(f"MMGA computes its own losses; do not pass {refused} to compile().")
    config = dict(COMPILE_DEFAULTS)
    rest = {}
    for key, value in kwargs.items():
        (config if key in COMPILE_DEFAULTS else rest)[key] = value
    return config, rest


def serialize_optimizer(optimizer):
    return keras.optimizers.serialize(optimizer)
