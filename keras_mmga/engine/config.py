"""Run configurations (`TrainConfig`, `DemoConfig`): plain dataclasses, no TensorFlow.

Kept apart from the engine so that the `keras-mmga` command can show every
default in `--help` without importing TensorFlow; the engine modules import
them from here, and `keras_mmga.engine` re-exports them.
"""

import dataclasses
import math
import os

from keras_mmga.data.pk_sampler import EPOCH_DEFINITIONS

STRATEGIES = ("one", "mirrored", "multiworker")
DRESS_GROUPS = ("upper", "bottom", "none")
DATASETS = ("market1501", "dukemtmcreid")
# The variants of `keras_mmga.models.VARIANTS` in the paper's table order
# (listed here so that a parser can offer them without importing the model).
VARIANT_NAMES = ("baseline", "baseline_att", "wmga", "dmga", "mmga")


@dataclasses.dataclass
class TrainConfig:
    """Everything a training run needs; the defaults are the paper's recipe (§4.2).

    Args:
        dataset_root: str, folder with `bounding_box_train/`,
            `bounding_box_test/` and `query/`.
        output_dir: str, the run folder (checkpoints, logs, resume state).
        mask_root: str, body-mask folder mirroring the dataset folder (the
            one holding `bounding_box_train/`, also when `dataset_root` is a
            folder above it); needed by `wmga`, `dmga` and `mmga`, ignored by
            `baseline` and `baseline_att`.
        dataset: `"market1501"` or `"dukemtmcreid"` (file-name pattern).
        variant: `"baseline"`, `"baseline_att"`, `"wmga"`, `"dmga"` or `"mmga"`.
        parts: the part groups of `"mmga"`, a tuple of names of
            `keras_mmga.data.masks.PART_GROUPS` (e.g. `("head", "torso",
            "legs", "feet")`); None is the model's default, `("upper",
            "bottom")`. The other variants have no parts (dmga's halves are
            fixed).
        image_size: `(H, W)` of the model input, divisible by 16 (384×128).
        num_identities: P identities per batch (24).
        num_instances: K images per identity (4).
        epochs: total epochs (900).
        epoch: what one epoch is: `"identities"` (default, the paper recipe:
            every training identity once, K images each, `ceil(N / P)` steps
            for N identities) or `"images"` (about one pass over the training
            images, torchreid's epoch: ~4× longer on Market-1501). The
            learning-rate decay, `eval_every`, resume and the replica blocks
            count in these epochs. See docs/TRAINING.md.
        steps_per_epoch: None = the steps of one `epoch`; an int fixes the
            epoch's length (the batches still come from the `epoch` stream).
        learning_rate: learning rate of the heads and attention modules (0.1).
        backbone_lr_scale: backbone learning rate / `learning_rate` (0.5, so 0.05).
        momentum: SGD momentum (0.9).
        weight_decay: L2 weight decay as PyTorch applies it (5e-4).
        lr_decay_epochs: epochs between learning-rate decays (90).
        lr_decay_rate: factor of each decay (0.5).
        triplet_margin: batch-hard triplet margin (0.3).
        triplet_weight: λ1 (2.0).
        attention_weight: λ2 (0.1).
        part_attention_weight: λ0 (0.5).
        backbone_weights: `"imagenet"`, None (random init) or a weights path.
        mask_format: `"lip"` (label maps) or `"binary"` (whole-body masks).
        dress_group: the group of LIP's dress and jumpsuit labels: `"upper"`
            (paper), `"bottom"` or `"none"`.
        missing_masks: `"error"` (default) or `"ignore"` (weight 0).
        replacement: identities with fewer than K images are sampled with
            replacement; False makes them a pre-flight error.
        erasing_probability: probability of random erasing (0.5).
        cache_images: keep the decoded, resized training images in memory
            (N·H·W·3 bytes: 1.9 GB for Market-1501 at 384×128).
        eval_every: evaluate rank-1 / mAP every N epochs (0: never); also
            decides `best.keras`.
        eval_batch_size: images per inference batch when evaluating.
        strategy: `"one"` (one device), `"mirrored"` (all local GPUs, or
            `devices`) or `"multiworker"` (machines listed in `TF_CONFIG`).
        devices: optional device list for `"mirrored"` (e.g. logical CPUs).
        sync_batchnorm: synchronised BatchNorm across replicas.
        cross_replica_triplet: mine triplets over the global batch under a
            strategy (True) or per replica (False, less communication).
        mixed_precision: `mixed_float16` on GPU (with loss scaling),
            `mixed_bfloat16` on CPU; losses stay float32.
        seed: seeds Python, NumPy, TensorFlow, the PK sampler and the
            augmentation.
        deterministic: also enable TensorFlow's op determinism (GPU kernels).
            On CPU it is not enough for bit-identical runs: TensorFlow's
            threaded kernels differ from run to run; set
            `TF_NUM_INTRAOP_THREADS=1` and `TF_NUM_INTEROP_THREADS=1` in the
            environment (before TensorFlow starts) for that.
        verbose: Keras progress verbosity (0, 1 or 2).

    Example:
    ```python
    config = TrainConfig("data/market1501", "runs/market_mmga", mask_root="data/market1501_masks")
    model, history = train(config)
    ```
    """

    dataset_root: str
    output_dir: str
    mask_root: str = None
    dataset: str = "market1501"
    variant: str = "mmga"
    parts: tuple = None
    image_size: tuple = (384, 128)
    num_identities: int = 24
    num_instances: int = 4
    epochs: int = 900
    epoch: str = "identities"
    steps_per_epoch: int = None
    learning_rate: float = 0.1
    backbone_lr_scale: float = 0.5
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_decay_epochs: int = 90
    lr_decay_rate: float = 0.5
    triplet_margin: float = 0.3
    triplet_weight: float = 2.0
    attention_weight: float = 0.1
    part_attention_weight: float = 0.5
    backbone_weights: str = "imagenet"
    mask_format: str = "lip"
    dress_group: str = "upper"
    missing_masks: str = "error"
    replacement: bool = True
    erasing_probability: float = 0.5
    cache_images: bool = False
    eval_every: int = 10
    eval_batch_size: int = 64
    strategy: str = "one"
    devices: tuple = None
    sync_batchnorm: bool = False
    cross_replica_triplet: bool = True
    mixed_precision: bool = False
    seed: int = 0
    deterministic: bool = False
    verbose: int = 1

    def validate(self):
        """Raises `ValueError` naming the first setting that cannot work."""
        from keras_mmga.data.masks import MASK_FORMATS
        from keras_mmga.models import VARIANTS

        if self.variant not in VARIANTS:
            raise ValueError(f"Unknown variant {self.variant!r}; expected one of {sorted(VARIANTS)}.")
        if self.parts is not None:
            _check_parts(self.parts, self.variant)
        if self.strategy not in STRATEGIES:
            raise ValueError(f"Unknown strategy {self.strategy!r}; expected one of {STRATEGIES}.")
        _choice(self, "dataset", DATASETS)
        _choice(self, "epoch", EPOCH_DEFINITIONS)
        _choice(self, "dress_group", DRESS_GROUPS)
        _choice(self, "mask_format", MASK_FORMATS)
        _choice(self, "missing_masks", ("error", "ignore"))
        _choice(self, "verbose", (0, 1, 2))
        try:
            size = tuple(self.image_size)
        except TypeError:
            size = ()
        if len(size) != 2 or not all(_is_int(s) and s > 0 and s % 16 == 0 for s in size):
            raise ValueError(
                f"image_size must be (H, W), two ints both divisible by 16 (the attention maps are "
                f"input/16), got {self.image_size!r}."
            )
        for name in ("num_identities", "num_instances", "epochs", "lr_decay_epochs", "eval_batch_size"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ValueError(f"{name} must be an int ≥ 1, got {value!r}.")
        for name in ("eval_every", "seed"):
            value = getattr(self, name)
            if not _is_int(value) or (name == "eval_every" and value < 0):
                raise ValueError(f"{name} must be an int{' ≥ 0 (0: never)' if name == 'eval_every' else ''}, "
                                 f"got {value!r}.")
        if self.steps_per_epoch is not None and (not _is_int(self.steps_per_epoch) or self.steps_per_epoch < 1):
            raise ValueError(f"steps_per_epoch must be an int ≥ 1 or None, got {self.steps_per_epoch!r}.")
        _number(self, "learning_rate", low=0.0, low_open=True)
        _number(self, "backbone_lr_scale", low=0.0)
        _number(self, "momentum", low=0.0, high=1.0, high_open=True)
        _number(self, "weight_decay", low=0.0)
        _number(self, "lr_decay_rate", low=0.0, low_open=True)  # > 1 grows the rate: unusual, not invalid
        _number(self, "triplet_margin", low=0.0)
        for name in ("triplet_weight", "attention_weight", "part_attention_weight"):
            _number(self, name, low=0.0)
        _number(self, "erasing_probability", low=0.0, high=1.0)
        if VARIANTS[self.variant]["supervised"] and not self.mask_root:
            raise ValueError(
                f"Variant {self.variant!r} is trained with body masks: set mask_root (--masks) to the "
                "mask folder that mirrors the dataset, or train 'baseline' / 'baseline_att'."
            )
        if self.mask_root and VARIANTS[self.variant]["supervised"] and not os.path.isdir(self.mask_root):
            raise FileNotFoundError(f"Mask root {self.mask_root!r} does not exist.")
        if self.devices and self.strategy != "mirrored":
            raise ValueError("devices is only used with strategy 'mirrored'.")


def _check_parts(parts, variant):
    """A non-empty sequence of distinct names, for variant mmga; the names themselves are the data side's."""
    if isinstance(parts, str) or not isinstance(parts, (tuple, list)) or not parts \
            or not all(isinstance(p, str) and p for p in parts):
        raise ValueError(f"parts must be a non-empty tuple of part-group names (e.g. ('head', 'torso', 'legs', "
                         f"'feet')) or None, got {parts!r}.")
    repeated = sorted({p for p in parts if list(parts).count(p) > 1})
    if repeated:
        raise ValueError(f"parts names each part group once; {repeated} appear more than once in {tuple(parts)!r}.")
    if variant != "mmga":
        raise ValueError(f"parts is a setting of variant 'mmga' (its part branches); variant {variant!r} has "
                         f"{'the fixed halves upper/bottom' if variant == 'dmga' else 'no parts'}: leave parts None.")


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _choice(config, name, choices):
    value = getattr(config, name)
    if value not in choices or isinstance(value, bool):
        raise ValueError(f"{name} must be one of {choices}, got {value!r}.")


def _number(config, name, low=None, high=None, low_open=False, high_open=False):
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


@dataclasses.dataclass
class DemoConfig:
    """A reduced recipe that shows learning on 2 CPU cores in about 5 minutes.

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
        image_size: model input `(H, W)`.
        num_identities, num_instances: P and K.
        epochs, steps_per_epoch: the schedule.
        learning_rate: base learning rate (backbone: half of it).
        lr_decay_epochs: epochs between halvings.
        variant: the model variant.
        seed: seeds the dataset, the initialisation and the sampling.
    """

    out_dir: str = "demo_output"
    export_dir: str = "exported"
    num_train_ids: int = 100
    num_test_ids: int = 100
    image_size: tuple = (64, 32)
    num_identities: int = 8
    num_instances: int = 4
    epochs: int = 8
    steps_per_epoch: int = 50
    learning_rate: float = 0.01
    lr_decay_epochs: int = 6
    variant: str = "mmga"
    seed: int = 0


def defaults(config_class):
    """`{field: default}` of a config dataclass (what `--help` shows)."""
    return {f.name: f.default for f in dataclasses.fields(config_class) if f.default is not dataclasses.MISSING}
