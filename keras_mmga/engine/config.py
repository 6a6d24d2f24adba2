"""Run configurations (`TrainConfig`, `DemoConfig`) and the named budgets (`RECIPES`): no TensorFlow.

`TrainConfig` is the one declaration of a run's settings: each field holds its
default, its help and the API it is a keyword of (`MMGA`, `MMGA.compile`,
`make_train_dataset`); the engine passes them on by name, and the
`keras-mmga` command builds its flags from the fields
(`keras_mmga.cli.config_flags`). Kept apart from the engine so that `--help`
shows every default without importing TensorFlow; `keras_mmga.engine`
re-exports the classes.
"""

import dataclasses
import os
import textwrap
import warnings

from keras_mmga.settings import (
    BACKBONES,
    COMPILE_DEFAULTS,
    DATASETS,
    DRESS_GROUPS,
    EPOCH_DEFINITIONS,
    MASK_FORMATS,
    STRATEGIES,
    VARIANT_NAMES,
    check_config_parts,
    choice,
    is_int,
    number,
)

# Which API each TrainConfig field is a keyword argument of (its "section"):
# the engine passes `config.kwargs_for(section)` as they are, so a field is
# declared once, here, with its default and its help.
SECTIONS = {
    "model": "keras_mmga.models.MMGA",
    "compile": "keras_mmga.models.MMGA.compile",
    "data": "keras_mmga.data.make_train_dataset",
}
# CLI argument groups, in `--help` order.
GROUPS = ("data", "model and losses", "optimisation", "run")


def setting(
    default=dataclasses.MISSING,
    help="",
    to=(),
    group="run",
    flag=None,
    short=None,
    choices=None,
    metavar=None,
    cli=True,
    flag_help=None,
):
    """A `TrainConfig` field: its default, its help (class docstring and `--help`), and where it goes.

    Args:
        default: the paper recipe's value (omitted: a required field).
        help: one description, shown by `help(TrainConfig)` and `keras-mmga train --help`.
        to: the sections (`SECTIONS`) that take the field as a keyword of the same name.
        group: the `--help` group (`GROUPS`).
        flag, short: the long flag (default `--field-name`) and an optional one-letter flag.
        choices: allowed values (the command line refuses others).
        metavar: how `--help` names the value.
        cli: False for fields the command line does not set (a device list).
        flag_help: the help of an on/off flag that turns the default around, when `help` (which
            describes the field) does not read as the flag's.
    """
    return dataclasses.field(
        default=default,
        metadata=dict(
            help=help,
            to=tuple(to),
            group=group,
            flag=flag,
            short=short,
            choices=choices,
            metavar=metavar,
            cli=cli,
            flag_help=flag_help,
        ),
    )


_C = COMPILE_DEFAULTS  # the paper's compile settings, the compile fields' defaults


@dataclasses.dataclass
class TrainConfig:
    """Everything a training run needs; the defaults are the paper's recipe (§4.2).

        Fields go, under their own names, to `MMGA(...)` (section `"model"`),
        `MMGA.compile(...)` (`"compile"`) and `make_train_dataset(...)`
        (`"data"`); `kwargs_for(section)` gives them. `from_recipe` starts from a
        named budget (`RECIPES`: `"paper"`, `"demo"`, `"synthetic_ablation"`).

        Args:
    {args}

        Example:
        ```python
        config = TrainConfig("data/market1501", "runs/market_mmga", mask_root="data/market1501_masks")
        model, history = train(config)
        quick = TrainConfig.from_recipe("demo", "data/synthetic/images", "runs/demo", mask_root="data/synthetic/masks")
        ```
    """

    dataset_root: str = setting(
        help="folder with `bounding_box_train/`, `bounding_box_test/` and `query/`, or a folder holding it "
        "(e.g. `Market-1501-v15.09.15/`).",
        group="data",
        flag="--data",
        metavar="DIR",
    )
    output_dir: str = setting(help="the run folder: checkpoints, logs, resume state.", flag="--output", metavar="DIR")
    mask_root: str = setting(
        None,
        "body-mask folder mirroring the dataset folder (the one holding `bounding_box_train/`, also when "
        "`dataset_root` is a folder above it); needed by wmga, dmga and mmga, ignored by baseline and "
        "baseline_att.",
        group="data",
        flag="--masks",
        metavar="DIR",
    )
    dataset: str = setting(
        "market1501", "file-name layout: `market1501` or `dukemtmcreid`.", group="data", choices=DATASETS
    )
    variant: str = setting(
        "mmga",
        "the ablation variant: baseline, baseline_att, wmga, dmga or mmga.",
        to=("model",),
        group="model and losses",
        choices=VARIANT_NAMES,
    )
    parts: tuple = setting(
        None,
        "the part groups of mmga, names of `keras_mmga.data.masks.PART_GROUPS` (e.g. head, torso, legs, "
        "feet); None is the model's default, upper and bottom. The other variants have no parts (dmga's "
        "halves are fixed).",
        to=("model", "data"),
        group="model and losses",
        metavar="NAME,NAME,...",
    )
    image_size: tuple = setting(
        (384, 128), "`(H, W)` of the model input, both divisible by 16.", to=("data",), group="data"
    )
    num_identities: int = setting(24, "P, identities per batch.", to=("data",), group="data", short="-P")
    num_instances: int = setting(4, "K, images per identity.", to=("data",), group="data", short="-K")
    epochs: int = setting(900, "total epochs.", group="optimisation")
    epoch: str = setting(
        "identities",
        "what one epoch is: `identities` (the paper recipe: every training identity once, K "
        "images each, ceil(N / P) steps for N identities) or `images` (about one pass over the "
        "training images, torchreid's epoch: ~4x longer on Market-1501). The learning-rate decay, "
        "`eval_every`, resume and the replica blocks count in these epochs (docs/TRAINING.md).",
        to=("data",),
        group="optimisation",
        choices=EPOCH_DEFINITIONS,
    )
    steps_per_epoch: int = setting(
        None,
        "None: the steps of one `epoch`; an int fixes the epoch's length (the batches still come from the "
        "`epoch` stream).",
        group="optimisation",
    )
    learning_rate: float = setting(
        _C["learning_rate"],
        "learning rate of the heads and attention modules.",
        to=("compile",),
        group="optimisation",
        flag="--lr",
    )
    backbone_lr_scale: float = setting(
        _C["backbone_lr_scale"], "backbone learning rate / `learning_rate`.", to=("compile",), group="optimisation"
    )
    momentum: float = setting(_C["momentum"], "SGD momentum.", to=("compile",), group="optimisation")
    weight_decay: float = setting(
        _C["weight_decay"], "L2 weight decay, as PyTorch applies it.", to=("compile",), group="optimisation"
    )
    lr_decay_epochs: int = setting(
        _C["lr_decay_epochs"], "epochs between learning-rate decays.", to=("compile",), group="optimisation"
    )
    lr_decay_rate: float = setting(_C["lr_decay_rate"], "factor of each decay.", to=("compile",), group="optimisation")
    triplet_margin: float = setting(
        _C["triplet_margin"], "batch-hard triplet margin m.", to=("compile",), group="model and losses", flag="--margin"
    )
    triplet_weight: float = setting(
        _C["triplet_weight"], "lambda1, weight of the triplet loss.", to=("compile",), group="model and losses"
    )
    attention_weight: float = setting(
        _C["attention_weight"], "lambda2, weight of the attention losses.", to=("compile",), group="model and losses"
    )
    part_attention_weight: float = setting(
        _C["part_attention_weight"],
        "lambda0, weight of each part map (eq. 5).",
        to=("compile",),
        group="model and losses",
    )
    backbone: str = setting(
        "resnet50",
        "`resnet50` (Keras's ResNet50, v1) or `resnet50_v1.5` (torchvision's / "
        "timm's layout; loads their ImageNet weights: the paper's start).",
        to=("model",),
        group="model and losses",
        choices=BACKBONES,
    )
    backbone_weights: str = setting(
        "imagenet",
        "`imagenet` (resnet50), None (random init; `none` on the command "
        "line) or a path: Keras's ResNet50 notop .h5 (resnet50); a "
        "torchvision .pth, a .safetensors file or a timm folder "
        "(resnet50_v1.5).",
        to=("model",),
        group="model and losses",
    )
    mask_format: str = setting(
        "lip",
        "mask files: `lip` (label maps) or `binary` (whole-body masks).",
        to=("data",),
        group="data",
        choices=MASK_FORMATS,
    )
    dress_group: str = setting(
        "upper",
        "the group of LIP's dress and jumpsuit labels: `upper` (paper), `bottom` or `none`.",
        to=("data",),
        group="data",
        choices=DRESS_GROUPS,
    )
    missing_masks: str = setting(
        "error",
        "`error`, or `ignore`: images without a mask add no attention loss (weight 0).",
        to=("data",),
        group="data",
        choices=("error", "ignore"),
    )
    replacement: bool = setting(
        True,
        "True: an identity with fewer than K images has some drawn twice in its K; "
        "False: such an identity is a pre-flight error.",
        to=("data",),
        group="data",
        flag="--no-replacement",
        flag_help="refuse identities with fewer than K images (a pre-flight error naming "
        "them) instead of drawing some of their images twice",
    )
    erasing_probability: float = setting(0.5, "probability of random erasing.", to=("data",), group="data")
    cache_images: bool = setting(
        False,
        "keep the decoded, resized training images in memory (N*H*W*3 bytes: 1.9 GB for Market-1501 at 384x128).",
        to=("data",),
        group="data",
    )
    eval_every: int = setting(10, "evaluate rank-1 / mAP every N epochs (0: never); also decides `best.keras`.")
    eval_batch_size: int = setting(64, "images per inference batch when evaluating.")
    save_optimizer: bool = setting(
        False,
        "also keep the optimizer's state (SGD momentum, as large as the weights) in latest.keras and "
        "best.keras; resuming never needs it (backup/ holds it once).",
        flag_help="also keep the optimizer's state (as large as the weights) in latest.keras and best.keras, e.g. "
        "to continue training elsewhere with its momentum; resuming does not need it",
    )
    strategy: str = setting(
        "one",
        "`one` (one device), `mirrored` (all local GPUs, or `devices`) or "
        "`multiworker` (the machines listed in TF_CONFIG).",
        choices=STRATEGIES,
    )
    devices: tuple = setting(None, "optional device list for `mirrored` (e.g. logical CPUs).", cli=False)
    sync_batchnorm: bool = setting(False, "BatchNorm statistics over all replicas.", to=("model",))
    cross_replica_triplet: bool = setting(
        _C["cross_replica_triplet"],
        "mine triplets over the all-gathered global batch under a strategy (True) or "
        "per replica (False, less communication).",
        to=("compile",),
        flag="--per-replica-triplet",
        flag_help="mine triplets within each replica's batch (less communication) instead of the all-gathered "
        "global batch",
    )
    mixed_precision: bool = setting(
        False, "`mixed_float16` on GPU (with loss scaling), `mixed_bfloat16` on CPU; losses stay float32."
    )
    seed: int = setting(
        0, "seeds Python, NumPy, the backend, the PK sampler and the augmentation.", to=("data",), group="optimisation"
    )
    deterministic: bool = setting(
        False,
        "also enable TensorFlow's op determinism (GPU kernels). On CPU, bit-identical runs also need "
        "TF_NUM_INTRAOP_THREADS=1 and TF_NUM_INTEROP_THREADS=1 in the environment.",
        group="optimisation",
    )
    verbose: int = setting(
        1,
        "Keras progress: 0 none, 1 a progress bar, 2 one line per epoch (--quiet: 0).",
        choices=(0, 1, 2),
        flag="--progress",
    )

    @classmethod
    def from_recipe(cls, name, dataset_root, output_dir, **overrides):
        """`TrainConfig` of the named budget `RECIPES[name]`, with `overrides` on top."""
        if name not in RECIPES:
            raise ValueError(f"Unknown recipe {name!r}; expected one of {sorted(RECIPES)}.")
        return cls(dataset_root, output_dir, **(RECIPES[name] | overrides))

    def kwargs_for(self, section):
        """`{field: value}` of the fields that `section` (`SECTIONS`) takes as keyword arguments."""
        if section not in SECTIONS:
            raise ValueError(f"Unknown section {section!r}; expected one of {sorted(SECTIONS)}.")
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if section in f.metadata["to"]}

    def validate(self):
        """Raises `ValueError` naming the first setting that cannot work."""
        from keras_mmga.models import VARIANTS

        if self.variant not in VARIANTS:
            raise ValueError(f"Unknown variant {self.variant!r}; expected one of {sorted(VARIANTS)}.")
        if self.parts is not None:
            check_config_parts(self.parts, self.variant)
        if self.strategy not in STRATEGIES:
            raise ValueError(f"Unknown strategy {self.strategy!r}; expected one of {STRATEGIES}.")
        choice(self, "dataset", DATASETS)
        choice(self, "epoch", EPOCH_DEFINITIONS)
        choice(self, "dress_group", DRESS_GROUPS)
        choice(self, "mask_format", MASK_FORMATS)
        choice(self, "backbone", BACKBONES)
        choice(self, "missing_masks", ("error", "ignore"))
        choice(self, "verbose", (0, 1, 2))
        try:
            size = tuple(self.image_size)
        except TypeError:
            size = ()
        if len(size) != 2 or not all(is_int(s) and s > 0 and s % 16 == 0 for s in size):
            raise ValueError(
                f"image_size must be (H, W), two ints both divisible by 16 (the attention maps are "
                f"input/16), got {self.image_size!r}."
            )
        for name in ("num_identities", "num_instances", "epochs", "lr_decay_epochs", "eval_batch_size"):
            value = getattr(self, name)
            if not is_int(value) or value < 1:
                raise ValueError(f"{name} must be an int ≥ 1, got {value!r}.")
        for name in ("eval_every", "seed"):
            value = getattr(self, name)
            if not is_int(value) or (name == "eval_every" and value < 0):
                raise ValueError(
                    f"{name} must be an int{' ≥ 0 (0: never)' if name == 'eval_every' else ''}, got {value!r}."
                )
        if self.steps_per_epoch is not None and (not is_int(self.steps_per_epoch) or self.steps_per_epoch < 1):
            raise ValueError(f"steps_per_epoch must be an int ≥ 1 or None, got {self.steps_per_epoch!r}.")
        number(self, "learning_rate", low=0.0, low_open=True)
        number(self, "backbone_lr_scale", low=0.0)
        number(self, "momentum", low=0.0, high=1.0, high_open=True)
        number(self, "weight_decay", low=0.0)
        number(self, "lr_decay_rate", low=0.0, low_open=True)  # > 1 grows the rate: unusual, not invalid
        number(self, "triplet_margin", low=0.0)
        for name in ("triplet_weight", "attention_weight", "part_attention_weight"):
            number(self, name, low=0.0)
        number(self, "erasing_probability", low=0.0, high=1.0)
        if self.triplet_weight > 0 and (self.num_instances < 2 or self.num_identities < 2):
            # batch_hard_triplet_loss needs, per anchor, another image of its id and an image of another id.
            which = (
                "num_instances (-K) = 1: no anchor has a positive"
                if self.num_instances < 2
                else "num_identities (-P) = 1: no anchor has a negative"
            )
            raise ValueError(
                f"{which} in a batch, so the triplet loss would be 0 for the whole run; use P >= 2 "
                "and K >= 2, or --triplet-weight 0 to train without it on purpose."
            )
        if self.mask_root and not VARIANTS[self.variant]["supervised"]:
            warnings.warn(
                f"variant {self.variant!r} trains without masks: mask_root (--masks) {self.mask_root!r} "
                "is not read (wmga, dmga and mmga use it).",
                stacklevel=2,
            )
        if VARIANTS[self.variant]["supervised"] and not self.mask_root:
            raise ValueError(
                f"Variant {self.variant!r} is trained with body masks: set mask_root (--masks) to the "
                "mask folder that mirrors the dataset, or train 'baseline' / 'baseline_att'."
            )
        if self.mask_root and VARIANTS[self.variant]["supervised"] and not os.path.isdir(self.mask_root):
            raise FileNotFoundError(f"Mask root {self.mask_root!r} does not exist.")
        from keras_mmga.run_lock import check_output_folder

        check_output_folder(self.output_dir, "output_dir (--output)")
        if os.path.isfile(self.dataset_root):
            raise NotADirectoryError(
                f"dataset_root (--data) {self.dataset_root!r} is a file: give the dataset "
                "folder (the one holding bounding_box_train/)."
            )
        if self.devices and self.strategy != "mirrored":
            raise ValueError("devices is only used with strategy 'mirrored'.")


def _args_doc(config_class):
    """The Args section of a config class's docstring, from its fields' help."""
    lines = []
    for f in dataclasses.fields(config_class):
        meta = f.metadata
        default = "required" if f.default is dataclasses.MISSING else f"default {f.default!r}"
        where = f"; goes to {', '.join(SECTIONS[s] for s in meta['to'])}" if meta["to"] else ""
        text = f"{f.name}: {meta['help']} ({default}{where})"
        lines += textwrap.wrap(text, 104, initial_indent=" " * 8, subsequent_indent=" " * 12)
    return "\n".join(lines)


TrainConfig.__doc__ = TrainConfig.__doc__.replace("{args}", _args_doc(TrainConfig), 1)


# Named budgets over the paper's recipe (the `TrainConfig` defaults): the
# fields each one changes. `TrainConfig.from_recipe(name, ...)`,
# `keras-mmga train --recipe NAME`, `keras-mmga ablation --recipe NAME`.
RECIPES = {
    # The paper (§4.2): 384x128, P x K = 24 x 4, 900 identity epochs.
    "paper": {},
    # `make demo`: learning shown on 2 CPU cores in ~5 minutes (see DemoConfig).
    "demo": dict(
        image_size=(64, 32),
        num_identities=8,
        num_instances=4,
        epochs=8,
        epoch="images",
        steps_per_epoch=50,
        learning_rate=0.01,
        lr_decay_epochs=6,
        backbone_weights=None,
        eval_every=0,
        verbose=2,
    ),
    # The comparisons of benchmarks/ (masks in training, finer parts) on the
    # synthetic set: 128x64, 15 epochs of 40 steps from random weights.
    "synthetic_ablation": dict(
        image_size=(128, 64),
        num_identities=8,
        num_instances=4,
        epochs=15,
        steps_per_epoch=40,
        learning_rate=0.01,
        backbone_weights=None,
        missing_masks="ignore",
        cache_images=True,
    ),
}
_DEMO = RECIPES["demo"]


@dataclasses.dataclass
class DemoConfig:
    """`make demo`: the `"demo"` recipe of `RECIPES` on the synthetic set, then evaluation, pictures and ONNX.

    Differences from the paper's recipe, all for time: a 64×32 input (4×2
    attention maps), random initialisation (no downloads), P×K = 8×4, 400 SGD
    steps (8 epochs of 50 steps, drawn from the image-epoch PK stream; the
    demo's budget is its own and does not follow the paper's epoch
    definition) at a learning rate of 0.01 (0.1 diverges from random weights
    at this batch size), halved for the last 2 epochs.

    Args:
        out_dir: where the data, the run, the pictures and `results.json` go.
        export_dir: where the ONNX model goes.
        num_train_ids, num_test_ids: identities of the synthetic dataset.
        image_size, num_identities, num_instances, epochs, steps_per_epoch,
            learning_rate, lr_decay_epochs, variant, seed: the `TrainConfig`
            fields of the same names (defaults: the `"demo"` recipe); `seed`
            also draws the dataset.
    """

    out_dir: str = "demo_output"
    export_dir: str = "exported"
    num_train_ids: int = 100
    num_test_ids: int = 100
    image_size: tuple = _DEMO["image_size"]
    num_identities: int = _DEMO["num_identities"]
    num_instances: int = _DEMO["num_instances"]
    epochs: int = _DEMO["epochs"]
    steps_per_epoch: int = _DEMO["steps_per_epoch"]
    learning_rate: float = _DEMO["learning_rate"]
    lr_decay_epochs: int = _DEMO["lr_decay_epochs"]
    variant: str = "mmga"
    seed: int = 0

    def train_config(self, dataset_root, output_dir, mask_root=None):
        """The demo's `TrainConfig`: the `"demo"` recipe with this config's fields of the same names."""
        own = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name in _TRAIN_FIELDS}
        own["image_size"] = tuple(own["image_size"])
        return TrainConfig.from_recipe("demo", dataset_root, output_dir, mask_root=mask_root, **own)


_TRAIN_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}


def defaults(config_class):
    """`{field: default}` of a config dataclass (what `--help` shows)."""
    return {f.name: f.default for f in dataclasses.fields(config_class) if f.default is not dataclasses.MISSING}
