"""Training an MMGA variant on a Market-1501 / DukeMTMC-reID layout dataset.

The engine in the spirit of torchreid / fast-reid: one `TrainConfig` holds a
run, `train(config)` builds strategy → data → model → callbacks and runs
`fit`. Everything a run writes goes to `config.output_dir`:

```
output_dir/
  config.json        the run's configuration
  latest.keras       last epoch that ended with finite losses (model and weights)
  best.keras         best mAP so far (when evaluating), best.json its metrics
  log.csv            one row per epoch, numbered from 1 (losses, lr, val_rank1 / val_mAP / val_mINP)
  tensorboard/       TensorBoard event files
  backup/            resume state, one copy (weights, optimizer slots, epoch counter)
  .keras-mmga.lock   while a run is going (a second run on the folder refuses)
```

The two .keras files hold what inference and fine-tuning need, not the
optimizer's state (`save_optimizer=True` keeps it there too).

Re-running the same command resumes from `backup/` at the last completed
epoch with the optimizer state, the step counter (so the learning-rate
schedule) and the position in the seeded data stream intact.
"""

import collections
import contextlib
import dataclasses
import json
import os

import keras

from keras_mmga.backends import distribute
from keras_mmga.data import load_dataset
from keras_mmga.engine.callbacks import (
    EpochCSVLogger,
    FiniteModelCheckpoint,
    LearningRateLogger,
    NonFiniteLossGuard,
    RankValidation,
    ResumableBackup,
)
from keras_mmga.engine.config import TrainConfig  # noqa: F401  (re-exported: engine.trainer.TrainConfig)
from keras_mmga.engine.run_folder import backup_dir, check_resume, remove_files
from keras_mmga.engine.train_data import check_batches, make_data, steps_per_epoch
from keras_mmga.models import MMGA
from keras_mmga.models.backbone import check_torch_weights_argument, fetch_imagenet_weights
from keras_mmga.run_lock import RunLock


def describe_budget(config, steps, batch_size):
    """The console line of a run's length: epochs, what one epoch is, steps, batch."""
    kind = "identity" if config.epoch == "identities" else "image"
    if config.steps_per_epoch:
        # A fixed epoch length is not one pass over anything: say what it is.
        what = f"{steps} steps each, fixed by steps_per_epoch; batches from the {kind}-epoch stream"
        return (
            f"{config.epochs} epochs ({what}) = {config.epochs * steps} iterations of {batch_size} images "
            f"(P x K = {config.num_identities} x {config.num_instances})."
        )
    what = "every identity once" if config.epoch == "identities" else "about every image once"
    return (
        f"{config.epochs} {kind} epochs ({what}) x {steps} steps = {config.epochs * steps} "
        f"iterations of {batch_size} images (P x K = {config.num_identities} x {config.num_instances})."
    )


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the run folder keeps the last good epoch."""


def mixed_precision_policy():
    """`"mixed_float16"` with a GPU (loss scaling applies), `"mixed_bfloat16"` on CPU."""
    if keras.backend.backend() == "jax":
        from keras_mmga.backends import jax as jax_backend

        return "mixed_float16" if jax_backend.has_gpu() else "mixed_bfloat16"
    import tensorflow as tf

    return "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"


def build_model(config, num_classes, steps_per_epoch=None):
    """The compiled MMGA of `config` (call it under the strategy's scope).

    Args:
        config: a `TrainConfig`.
        num_classes: number of training identities.
        steps_per_epoch: optimizer steps in one epoch, for the epoch-based
            learning-rate decay (`fit` fills it in when None).

    Example:
    ```python
    model = build_model(TrainConfig("data", "run", backbone_weights=None), num_classes=751)
    ```
    """
    # The policy is given to the model rather than set globally, so that a
    # mixed-precision run does not change later models in the same process.
    dtype = mixed_precision_policy() if config.mixed_precision else None
    model = MMGA(num_classes, input_shape=tuple(config.image_size) + (3,), dtype=dtype, **config.kwargs_for("model"))
    model.compile(steps_per_epoch=steps_per_epoch, **config.kwargs_for("compile"))
    return model


# Where a run computes, whatever the backend: `scope()` to build and train the
# model in, the replica blocks of the PK stream, the devices that share each
# global batch, and which process this is.
_Placement = collections.namedtuple("_Placement", "scope data_replicas num_devices is_chief worker_index")


def _placement(config):
    """The `_Placement` of `config.strategy` on the current Keras backend.

    TensorFlow: a `tf.distribute` strategy; each replica runs the step on its
    slice of the batch, so the PK stream is blocked per replica (whole
    identities each) and the losses reduce across replicas
    (`keras_mmga.backends.distribute`). JAX: a Keras distribution (`DataParallel`,
    `keras_mmga.backends.jax`); the step computes on the global batch sharded
    over the devices, so the stream is the one-device stream.
    """
    devices = list(config.devices) if config.devices else None
    if keras.backend.backend() == "jax":
        from keras_mmga.backends import jax as jax_backend

        distribution, num_devices, process = jax_backend.training_distribution(config.strategy, devices)
        scope = distribution.scope if distribution is not None else contextlib.nullcontext
        return _Placement(scope, 1, num_devices, process == 0, process)
    strategy = distribute.make_strategy(config.strategy, devices)
    is_chief, worker_index = _worker(strategy)
    replicas = strategy.num_replicas_in_sync
    return _Placement(strategy.scope, replicas, replicas, is_chief, worker_index)


def _worker(strategy):
    """`(is_chief, worker_index)`: only the chief writes checkpoints and logs.

    With `MultiWorkerMirroredStrategy` every worker runs this code; without a
    "chief" task in TF_CONFIG, worker 0 is the chief (TensorFlow's convention).
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True, 0
    task_type, task_id = resolver.task_type, int(resolver.task_id or 0)
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return (task_type == "chief" or (not has_chief and task_type == "worker" and task_id == 0)), task_id


def train(config, extra_callbacks=()):
    """Trains `config.variant` and returns `(model, history)`.

    Order matters for distribution: the strategy is created first, the PK
    dataset is built for its replica count (each replica gets whole
    identities), and the model is built and compiled under its scope. All
    checks that can fail on bad input (P/K against the identities, missing or
    mis-shaped masks, unreadable images, a run folder holding another run)
    happen before the first step.

    Running it again with the same `output_dir` resumes from the last
    completed epoch; a run that already finished returns at once with its
    weights restored.

    Args:
        config: a `TrainConfig`.
        extra_callbacks: more Keras callbacks, run after the engine's: on
            the epochs `eval_every` evaluates, their logs hold `val_rank1`,
            `val_mAP` and `val_mINP` (e.g.
            `keras.callbacks.EarlyStopping("val_mAP", mode="max")`).

    Returns:
        `(model, history)`; `history.history` holds the epochs run by this
        call (none when the run was already complete).

    Raises:
        ValueError / FileNotFoundError: bad configuration or data, before
            training starts.
        TrainingDiverged: the loss became NaN/Inf. `latest.keras` and the
            resume state keep the last epoch that ended with finite losses.

    Example:
    ```python
    config = TrainConfig("data/market1501", "runs/mmga", mask_root="data/masks", epochs=120)
    model, history = train(config)
    history.history["val_mAP"][-1]
    ```
    """
    import tensorflow as tf

    config.validate()
    if config.backbone_weights == "imagenet" and config.backbone == "resnet50":
        # Before any data is read: offline, this fails at once with the ways to get the file.
        fetch_imagenet_weights()
    elif config.backbone_weights is not None and config.backbone == "resnet50_v1.5":
        check_torch_weights_argument(config.backbone_weights)
    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()

    # 1. Strategy (TensorFlow) or distribution (JAX) before anything that
    # creates variables or datasets.
    placement = _placement(config)
    is_chief, worker_index = placement.is_chief, placement.worker_index
    out = os.fspath(config.output_dir)
    backup = backup_dir(out, is_chief, worker_index)
    # One run per folder: a second `train` on it refuses, naming the first one's pid. The other
    # workers of a multi-worker run share the chief's folder and write only their own backup/.
    with RunLock(out, "train") if is_chief else contextlib.nullcontext():
        return _train(config, extra_callbacks, placement, out, backup)


def _train(config, extra_callbacks, placement, out, backup):
    import tensorflow as tf

    is_chief = placement.is_chief

    # 2. Data, with every pre-flight check the pipeline does (P and K against
    # the identities, replica blocks, images and masks readable, batch shapes).
    # The PK stream is seeded, so an uninterrupted run would now be
    # `initial_epoch * steps` batches in: the dataset starts there.
    per_replica = config.num_identities // placement.data_replicas
    if (
        config.triplet_weight > 0
        and not config.cross_replica_triplet
        and placement.data_replicas > 1
        and per_replica < 2
    ):
        # Mined per replica, each replica's P / R identities must give every anchor a negative.
        raise ValueError(
            f"--per-replica-triplet with P={config.num_identities} over {placement.data_replicas} replicas leaves "
            f"{per_replica} identity per replica: no anchor has a negative, the triplet loss would be 0. Use P >= "
            f"{2 * placement.data_replicas}, or mine over the global batch (drop --per-replica-triplet)."
        )
    data = load_dataset(config.dataset_root, config.dataset, verbose=config.verbose > 0 and is_chief)
    initial_epoch = check_resume(config, out, data.num_train_pids, backup)
    steps = steps_per_epoch(config, data.train, placement.data_replicas)
    train_data = make_data(config, data, placement.data_replicas, start_batch=initial_epoch * steps)
    check_batches(
        train_data.dataset.element_spec, config.variant, config.image_size, train_data.batch_size, config.parts
    )
    if train_data.batch_size % placement.num_devices:
        raise ValueError(
            f"The batch of P x K = {config.num_identities} x {config.num_instances} = {train_data.batch_size} "
            f"images must be divisible by the number of devices ({placement.num_devices}) that share it."
        )

    # 3. Model under the strategy's scope. Keras initialisers draw their seeds
    # from Python's `random` when constructed, and the data set-up above may
    # consume it differently in a fresh process than in one that already ran
    # (lazy imports, tracing caches): re-seed so the initial weights depend on
    # the seed alone.
    keras.utils.set_random_seed(config.seed)
    if config.verbose and is_chief:
        # Seconds to tens of seconds (ResNet50, and the ImageNet weights copied in): say so.
        print(
            f"building {config.variant} ({config.image_size[0]}x{config.image_size[1]}, "
            f"{data.num_train_pids} identities) ...",
            flush=True,
        )
    with placement.scope():
        model = build_model(config, data.num_train_pids, steps_per_epoch=steps)

    if is_chief:
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "config.json"), "w") as f:
            json.dump(dataclasses.asdict(config) | {"num_classes": data.num_train_pids}, f, indent=2, default=str)
    if initial_epoch >= config.epochs:
        print(f"{out}: the run is complete ({initial_epoch} epochs); restoring its weights.")
    elif initial_epoch and config.verbose:
        print(f"{out}: resuming at epoch {initial_epoch + 1} of {config.epochs}.")
    if config.verbose and is_chief and initial_epoch < config.epochs:
        print(describe_budget(config, steps, train_data.batch_size))

    dataset = train_data.dataset
    if config.strategy == "multiworker" and keras.backend.backend() == "tensorflow":
        # Every worker generates the same seeded global stream; DATA sharding
        # (after Keras re-batches per worker) keeps each worker's contiguous
        # slice of every global batch, i.e. its whole identities.
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        dataset = dataset.with_options(options)

    nan_guard = NonFiniteLossGuard()
    callbacks = [ResumableBackup(backup), nan_guard, LearningRateLogger()]
    if config.eval_every:
        callbacks.append(
            RankValidation(
                data.query,
                data.gallery,
                config.image_size,
                config.eval_every,
                config.eval_batch_size,
                best_path=os.path.join(out, "best.keras") if is_chief else None,
                verbose=is_chief and config.verbose > 0,
                progress=False,
                include_optimizer=config.save_optimizer,
            )
        )
    if is_chief:
        callbacks += [
            FiniteModelCheckpoint(os.path.join(out, "latest.keras"), include_optimizer=config.save_optimizer),
            # A new run starts a new log; a resumed one continues it.
            EpochCSVLogger(
                os.path.join(out, "log.csv"),
                RankValidation.KEYS if config.eval_every else (),
                append=bool(initial_epoch),
            ),
            keras.callbacks.TensorBoard(os.path.join(out, "tensorboard"), write_graph=False),
        ]
        if not initial_epoch:
            remove_files(os.path.join(out, "best.keras"), os.path.join(out, "best.json"))
    callbacks.extend(extra_callbacks)

    try:
        # On JAX under the distribution's scope too: it applies to the batches
        # (and the evaluation's predictions) only while it is current. Not on
        # TensorFlow: under a multi-worker strategy's scope the chief's
        # checkpoint saves would run collectives the other workers never join.
        fit_scope = placement.scope if keras.backend.backend() == "jax" else contextlib.nullcontext
        with fit_scope():
            history = model.fit(
                dataset,
                epochs=config.epochs,
                steps_per_epoch=steps,
                callbacks=callbacks,
                # The PK stream is shuffled by its sampler; Keras would warn that shuffle=True is ignored.
                shuffle=False,
                verbose=config.verbose if is_chief else 0,
            )
    except KeyboardInterrupt:
        # The epoch under way is lost; the finished ones are in the resume state (every worker has its
        # own backup/; only the chief writes log.csv), which is what the same command resumes from.
        last = ResumableBackup.completed_epochs(backup)
        raise KeyboardInterrupt(
            f"{out!r} keeps epoch {last} of {config.epochs}; run the same command again to resume from there"
            if last
            else f"no epoch finished in {out!r}; the same command starts it again"
        ) from None
    except RuntimeError as err:
        if nan_guard.failure is None:
            raise
        last = ResumableBackup.completed_epochs(backup)
        kept = (
            f"'latest.keras' and the resume state in {out!r} keep epoch {last}"
            if last
            else "no epoch finished, so no 'latest.keras' was written"
        )
        raise TrainingDiverged(
            f"Training stopped: {nan_guard.failure}. {kept}. Lower the learning rate (--lr) or check the "
            "data, then re-run the same command to resume from there."
        ) from err
    return model, history
