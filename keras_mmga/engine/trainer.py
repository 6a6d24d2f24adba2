"""Training an MMGA variant on a Market-1501 / DukeMTMC-reID layout dataset."""

import dataclasses
import json
import os

import keras

from keras_mmga import distribute
from keras_mmga.data import load_dataset, make_train_dataset
from keras_mmga.engine.callbacks import FiniteModelCheckpoint, RankEvaluation, StopOnNonFiniteLoss
from keras_mmga.engine.evaluator import evaluate_split
from keras_mmga.models import MMGA


@dataclasses.dataclass
class TrainConfig:
    """Everything a training run needs; the defaults are the paper's recipe (§4.2).

    Attributes:
        dataset_root: folder with bounding_box_train/, bounding_box_test/, query/.
        output_dir: checkpoints (`latest.keras`, `best.keras`), `log.csv`,
            `tensorboard/`, `backup/` (resume state) and `config.json`.
        mask_root: mirrored parsing-mask folder (needed by wmga/dmga/mmga).
        dataset: `"market1501"` or `"dukemtmcreid"`.
        variant: `baseline`, `baseline_att`, `wmga`, `dmga` or `mmga`.
        image_size: model input (H, W).
        num_identities, num_instances: P × K per batch (24 × 4).
        epochs: 900 in the paper. steps_per_epoch: None = one pass over the
            training images.
        learning_rate, backbone_lr_scale, momentum, weight_decay,
        lr_decay_epochs, lr_decay_rate: the optimiser (0.1, 0.5, 0.9, 5e-4, 90, 0.5).
        triplet_margin, triplet_weight, attention_weight, part_attention_weight:
            0.3, λ1 = 2.0, λ2 = 0.1, λ0 = 0.5.
        backbone_weights: "imagenet", None or a path.
        mask_format: "lip" or "binary". missing_masks: "error" or "ignore".
        replacement: sample identities with < K images with replacement.
        eval_every: evaluate every N epochs (0: never).
        strategy: "one", "mirrored" or "multiworker". sync_batchnorm: bool.
        mixed_precision: float16 on GPU, bfloat16 on CPU.
        seed: int. verbose: Keras progress verbosity (0, 1, 2).
    """

    dataset_root: str
    output_dir: str
    mask_root: str = None
    dataset: str = "market1501"
    variant: str = "mmga"
    image_size: tuple = (384, 128)
    num_identities: int = 24
    num_instances: int = 4
    epochs: int = 900
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
    missing_masks: str = "error"
    replacement: bool = True
    eval_every: int = 10
    strategy: str = "one"
    sync_batchnorm: bool = False
    mixed_precision: bool = False
    seed: int = 0
    verbose: int = 1


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


def mixed_precision_policy():
    """`mixed_float16` with a GPU (loss scaling applies), `mixed_bfloat16` on CPU."""
    import tensorflow as tf

    return "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"


def build_model(config, num_classes):
    """The compiled MMGA of `config` (call under the strategy's scope)."""
    model = MMGA(
        num_classes,
        variant=config.variant,
        input_shape=tuple(config.image_size) + (3,),
        backbone_weights=config.backbone_weights,
        sync_batchnorm=config.sync_batchnorm,
    )
    model.compile(
        learning_rate=config.learning_rate,
        backbone_lr_scale=config.backbone_lr_scale,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        lr_decay_epochs=config.lr_decay_epochs,
        lr_decay_rate=config.lr_decay_rate,
        triplet_margin=config.triplet_margin,
        triplet_weight=config.triplet_weight,
        attention_weight=config.attention_weight,
        part_attention_weight=config.part_attention_weight,
    )
    return model


def train(config, extra_callbacks=()):
    """Trains `config.variant` and returns `(model, history)`.

    Running it again with the same `output_dir` after an interruption resumes
    from the last completed epoch (weights, optimizer state, epoch counter and
    so the learning-rate schedule), via `keras.callbacks.BackupAndRestore`.

    Raises:
        TrainingDiverged: the loss became NaN/Inf; `latest.keras` keeps the
            last epoch that ended with finite losses.
    """
    keras.utils.set_random_seed(config.seed)
    if config.mixed_precision:
        keras.mixed_precision.set_global_policy(mixed_precision_policy())
    os.makedirs(config.output_dir, exist_ok=True)
    with open(os.path.join(config.output_dir, "config.json"), "w") as f:
        json.dump(dataclasses.asdict(config), f, indent=2, default=str)

    strategy = distribute.make_strategy(config.strategy)
    data = load_dataset(config.dataset_root, config.dataset, verbose=config.verbose > 0)
    with strategy.scope():
        model = build_model(config, data.num_train_pids)
    if model.mask_supervised and config.mask_root is None:
        raise ValueError(f"Variant {config.variant!r} is trained with body masks: set mask_root.")
    train_data = make_train_dataset(
        data.train,
        config.image_size,
        config.num_identities,
        config.num_instances,
        mask_root=config.mask_root if model.mask_supervised else None,
        image_root=config.dataset_root,
        mask_mode=model.mask_mode or "parts",
        mask_format=config.mask_format,
        missing_masks=config.missing_masks,
        num_replicas=strategy.num_replicas_in_sync,
        replacement=config.replacement,
        seed=config.seed,
    )
    steps = config.steps_per_epoch or train_data.steps_per_epoch

    out = config.output_dir
    nan_guard = StopOnNonFiniteLoss()
    callbacks = [
        keras.callbacks.BackupAndRestore(os.path.join(out, "backup")),
        nan_guard,
        FiniteModelCheckpoint(os.path.join(out, "latest.keras")),
        keras.callbacks.CSVLogger(os.path.join(out, "log.csv"), append=True),
        keras.callbacks.TensorBoard(os.path.join(out, "tensorboard"), write_graph=False),
    ]
    if config.eval_every:
        def evaluate_fn(m):
            return evaluate_split(m, data.query, data.gallery, config.image_size, verbose=False)[0]

        callbacks.insert(3, RankEvaluation(evaluate_fn, config.eval_every, os.path.join(out, "best.keras")))
    callbacks.extend(extra_callbacks)
    history = model.fit(
        train_data.dataset, epochs=config.epochs, steps_per_epoch=steps, callbacks=callbacks, verbose=config.verbose
    )
    if nan_guard.failure:
        raise TrainingDiverged(
            f"Training stopped: {nan_guard.failure}. The last checkpoint with finite losses is "
            f"{os.path.join(out, 'latest.keras')!r}; lower the learning rate or check the data."
        )
    return model, history
