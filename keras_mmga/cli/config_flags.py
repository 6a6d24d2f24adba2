"""Command-line flags built from `TrainConfig`'s fields: one flag per field, its help and default included.

`add_config_flags(parser)` adds them (argparse only, no TensorFlow);
`config_kwargs(args)` reads the parsed values back as `TrainConfig` keyword
arguments. A flag the user did not give takes the value of the chosen
`--recipe` (`keras_mmga.engine.config.RECIPES`), else the field's default,
so `--recipe demo --epochs 2` is the demo budget with two epochs.
"""

import argparse
import dataclasses

from keras_mmga.engine.config import GROUPS, RECIPES, TrainConfig


class Unset:
    """A flag's default when the user did not give it: the field's default, and what `--help` shows for it."""

    def __init__(self, value, shown):
        self.value = value
        self.shown = shown

    def __str__(self):
        return self.shown

    __repr__ = __str__


def _shown(value):
    return "none" if value is None else ",".join(value) if isinstance(value, tuple) else str(value)


def parse_parts(text):
    """`"head,torso,legs,feet"` → `("head", "torso", "legs", "feet")` (the `--parts` value)."""
    parts = tuple(name.strip() for name in text.split(","))
    if not all(parts):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated part-group names such as head,torso,legs,feet, got {text!r}"
        )
    return parts


def parse_weights(text):
    """`--backbone-weights`: `none` (any case) is random initialisation."""
    return None if text.lower() == "none" else text


# Value parsers of the fields whose type is not their default's.
_TYPES = {"parts": parse_parts, "backbone_weights": parse_weights, "steps_per_epoch": int}


def _flag(field):
    return field.metadata["flag"] or "--" + field.name.replace("_", "-")


def add_config_flags(parser, exclude=(), recipe=True, default_recipe="paper"):
    """Adds a flag for every `TrainConfig` field the command line sets, in `GROUPS`.

    Args:
        parser: an `argparse.ArgumentParser`.
        exclude: field names the command sets itself (e.g. `keras-mmga
            ablation` sets `variant` per run).
        recipe: also add `--recipe NAME`.
        default_recipe: the `--recipe` when none is given (the defaults `--help` shows are the paper's).

    Returns:
        The parser.
    """
    groups = {name: parser.add_argument_group(name) for name in GROUPS}
    # `--help` shows the values of the recipe used when --recipe is not given.
    base = RECIPES[default_recipe]
    if recipe:
        groups["run"].add_argument(
            "--recipe",
            choices=sorted(RECIPES),
            default=default_recipe,
            help="named budget the other flags start from: "
            + "; ".join(
                f"{name}: {', '.join(f'{k}={v}' for k, v in fields.items()) or 'the defaults shown'}"
                for name, fields in RECIPES.items()
            ),
        )
    for field in dataclasses.fields(TrainConfig):
        meta = field.metadata
        if not meta["cli"] or field.name in exclude:
            continue
        group = groups[meta["group"]]
        help_text = meta["help"]
        if field.name == "image_size":
            for i, side in enumerate(("height", "width")):
                shown = _shown(base.get("image_size", field.default)[i])
                group.add_argument(
                    f"--{side}",
                    dest=f"image_{side}",
                    type=int,
                    default=Unset(field.default[i], shown),
                    help=f"input {side} (divisible by 16)",
                )
            continue
        names = [meta["short"], _flag(field)] if meta["short"] else [_flag(field)]
        kwargs = dict(dest=field.name, help=help_text)
        if field.default is dataclasses.MISSING:
            kwargs.update(required=True, metavar=meta["metavar"], default=argparse.SUPPRESS)
        elif isinstance(field.default, bool):
            # The flag turns the paper's setting around (--no-replacement, --cache-images): off by default.
            kwargs.update(
                action="store_false" if field.default else "store_true",
                default=Unset(field.default, shown="off"),
                help=meta.get("flag_help") or f"{field.name}={not field.default}: {help_text}",
            )
        else:
            kind = _TYPES.get(field.name) or (type(field.default) if field.default is not None else str)
            kwargs.update(
                type=kind,
                default=Unset(field.default, _shown(base.get(field.name, field.default))),
                choices=meta["choices"],
                metavar=meta["metavar"],
            )
        group.add_argument(*names, **kwargs)
    return parser


def config_kwargs(args, exclude=(), given_only=False):
    """Parsed arguments → `TrainConfig` keyword arguments (the recipe's value where a flag was not given).

    With `given_only`, only the fields a flag or the recipe set: the callee's
    defaults stand for the rest.
    """
    chosen = RECIPES[getattr(args, "recipe", "paper")]
    values = vars(args)
    kwargs = {}
    for field in dataclasses.fields(TrainConfig):
        if not field.metadata["cli"] or field.name in exclude:
            continue
        if field.name == "image_size":
            sides = [values["image_height"], values["image_width"]]
            if given_only and "image_size" not in chosen and all(isinstance(s, Unset) for s in sides):
                continue
            base = chosen.get("image_size", field.default)
            kwargs["image_size"] = tuple(base[i] if isinstance(s, Unset) else s for i, s in enumerate(sides))
            continue
        value = values[field.name]
        if not isinstance(value, Unset):
            kwargs[field.name] = value
        elif field.name in chosen or not given_only:
            kwargs[field.name] = chosen.get(field.name, value.value)
    return kwargs
