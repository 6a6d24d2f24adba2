"""Callbacks of the training engine: resume state, NaN guard, checkpoints, rank evaluation."""

import json
import math
import os

import keras
import numpy as np


def _finite(logs):
    return all(math.isfinite(float(v)) for v in (logs or {}).values() if np.ndim(v) == 0)


class ResumableBackup(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` that never backs up a diverged epoch and outlives the run.

    Differences from the Keras callback, each for crash safety:

    * the backup is written to temporary names and renamed into place, so a
      process killed while writing it restarts from the previous epoch's
      (one copy on disk, not Keras's two generations of `double_checkpoint`);
    * an epoch whose logs hold NaN/Inf is not backed up, so a restart never
      resumes from diverged weights;
    * the backup is kept when `fit` returns: re-running a finished command
      restores the final state instead of silently training from scratch.

    The backup holds the weights, the optimizer's variables (momentum buffers
    and the iteration count, which drives the learning-rate schedule) and the
    number of completed epochs.

    Args:
        backup_dir: str, the folder of the resume state.

    Example:
    ```python
    model.fit(data, epochs=10, steps_per_epoch=100, callbacks=[ResumableBackup("run/backup")])
    ```
    """

    def __init__(self, backup_dir):
        super().__init__(os.fspath(backup_dir), save_freq="epoch", double_checkpoint=False, delete_checkpoint=False)

    def on_train_begin(self, logs=None):
        # Keras creates the folder at the first save with a check-then-create,
        # which races with another worker creating `backup/worker<i>/` (and so
        # `backup/`) in the same instant; create it idempotently up front.
        if "://" not in self.backup_dir:
            os.makedirs(self.backup_dir, exist_ok=True)
        super().on_train_begin(logs)

    def on_epoch_end(self, epoch, logs=None):
        if _finite(logs):
            super().on_epoch_end(epoch, logs)

    def _save_model(self):
        # Weights (with the optimizer's slots and step) first, then the epoch count, each renamed
        # into place: a crash leaves the previous complete file, never half of one.
        os.makedirs(self.backup_dir, exist_ok=True)
        tmp = os.path.join(self.backup_dir, "latest.tmp.weights.h5")
        self.model.save_weights(tmp, overwrite=True)
        os.replace(tmp, self._weights_path)
        tmp = self._training_metadata_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"epoch": self._current_epoch, "batch": self._last_batch_seen}, f)
        os.replace(tmp, self._training_metadata_path)

    @staticmethod
    def completed_epochs(backup_dir):
        """Epochs completed by the run backed up in `backup_dir` (0 if none).

        Read before `fit` so the data stream can be positioned at the epoch
        the restore continues from.
        """
        backup_dir = os.fspath(backup_dir)
        if not os.path.isfile(os.path.join(backup_dir, "latest.weights.h5")):
            return 0
        try:
            with open(os.path.join(backup_dir, "training_metadata.json")) as f:
                return int(json.load(f)["epoch"])
        except (OSError, ValueError, KeyError):
            return 0


class NonFiniteLossGuard(keras.callbacks.TerminateOnNaN):
    """`TerminateOnNaN` that raises at the first NaN/Inf loss and says where.

    Raising (rather than stopping gracefully) skips every later `on_epoch_end`,
    so neither the backup nor `latest.keras` is overwritten with the diverged
    weights. `failure` describes the batch, for the engine's error message.
    """

    def __init__(self):
        super().__init__(raise_error=True)
        self.failure = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            terms = ", ".join(f"{k} {float(v):.4g}" for k, v in sorted(logs.items()) if k != "loss" and np.ndim(v) == 0)
            self.failure = f"the loss became {float(loss)} at epoch {self._epoch + 1}, batch {batch + 1} ({terms})"
        super().on_batch_end(batch, logs)


class LearningRateLogger(keras.callbacks.Callback):
    """Adds the epoch's learning rates (`lr` heads, `backbone_lr`) to the epoch logs.

    Read at the epoch's start: the value used during the epoch, which the CSV
    log then records next to the losses (and which a resumed run continues).
    """

    def on_epoch_begin(self, epoch, logs=None):
        optimizer = self.model.optimizer
        self._lr = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
        scale = getattr(self.model, "loss_config", {}).get("backbone_lr_scale", 1.0)
        self._backbone_lr = self._lr * float(scale)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs.update(lr=self._lr, backbone_lr=self._backbone_lr)


class EpochCSVLogger(keras.callbacks.CSVLogger):
    """`CSVLogger` whose columns include keys that only some epochs log, with epochs numbered from 1.

    Keras fixes the columns at the first epoch, so metrics added every N
    epochs (`val_mAP`, ...) would never reach the file; here they are declared
    up front and read "NA" in the epochs without them. The `epoch` column
    counts from 1, as the console, `best.json` and the resume messages do
    (Keras's own logger counts from 0).

    Args:
        filename: str, the CSV file.
        extra_keys: keys to include even if the first epoch lacks them.
        append: continue an existing file (a resumed run).
    """

    def __init__(self, filename, extra_keys=(), append=False):
        super().__init__(os.fspath(filename), append=append)
        self.extra_keys = tuple(extra_keys)

    def on_epoch_end(self, epoch, logs=None):
        if self.keys is None:
            self.keys = sorted(set(logs or {}) | set(self.extra_keys))
        super().on_epoch_end(epoch + 1, logs)


class FiniteModelCheckpoint(keras.callbacks.Callback):
    """Saves the model at each epoch end unless the epoch's logs are not finite.

    Keras's ModelCheckpoint would overwrite the last good file with the
    diverged weights of an epoch that ended in NaN. The file is written to a
    temporary name and renamed, so a crash mid-write leaves the previous one.

    Args:
        path: str, the `.keras` file.
        include_optimizer: also save the compile settings and the optimizer's
            state (momentum slots: as large as the weights). Default False:
            the file holds what inference and fine-tuning need (the model's
            configuration and weights); resuming a run uses its `backup/`.
    """

    def __init__(self, path, include_optimizer=False):
        super().__init__()
        self.path = os.fspath(path)
        self.include_optimizer = bool(include_optimizer)

    def on_epoch_end(self, epoch, logs=None):
        if _finite(logs):
            save_model(self.model, self.path, self.include_optimizer)


def save_model(model, path, include_optimizer=False):
    """`model.save(path)` written to a temporary name and renamed; without the optimizer unless asked.

    Without the optimizer the file is about half the size (SGD keeps one
    momentum slot per weight) and loads as an uncompiled model: `predict`,
    export and evaluation use it as it is; fine-tuning calls `compile` first.
    """
    path = os.fspath(path)
    tmp = path[: -len(".keras")] + ".tmp.keras"
    if include_optimizer or not getattr(model, "compiled", False):
        model.save(tmp)
    else:
        # Keras saves the optimizer (and the compile settings) of a compiled model: hide them for
        # the save, then put them back.
        optimizer, compiled = model.optimizer, model.compiled
        try:
            model.optimizer, model.compiled = None, False
            model.save(tmp)
        finally:
            model.optimizer, model.compiled = optimizer, compiled
    os.replace(tmp, path)


class RankValidation(keras.callbacks.Callback):
    """Re-ID validation for your own `model.fit`: `val_rank1`, `val_mAP`, `val_mINP` in the epoch logs.

    Losses on a held-out split say little in re-ID: validation identities are
    not the classifier's classes, and early in training (BatchNorm statistics
    of a few steps from random weights) `val_loss` is NaN or 1e16. What
    matters is how the gallery is ranked for each query, so this callback
    extracts flip-averaged features of `query` and `gallery` every `every`
    epochs and writes rank-1, mAP and mINP (fractions) into the logs, where
    `EarlyStopping`, `ModelCheckpoint`, `CSVLogger`, TensorBoard and the
    returned history see them.

    Keras hands every callback the same logs in list order: put this one
    before the callbacks that read its keys, and give them `mode="max"`
    (Keras cannot tell that a larger mAP is better). With `every` > 1 the
    other epochs have no `val_mAP`: `EarlyStopping` and `ModelCheckpoint`
    skip them with a warning (patience then counts evaluations).
    (`keras_mmga.engine.train` adds it itself, see `eval_every`.)

    Args:
        query: list of `(path, pid, camid)` (a dataset's `.query`), or a
            `ReIDDataset` (then `gallery` is its `.gallery`).
        gallery: list of `(path, pid, camid)` (a dataset's `.gallery`).
        image_size: `(H, W)` the images are resized to; default the model's
            input size.
        every: evaluate after epochs `every, 2·every, ...` and the last one.
        batch_size: images per inference batch.
        flip: average each image's feature with its mirror image's (the
            paper's protocol).
        best_path: optional `.keras` path where the best model by mAP is
            saved (and `best.json` beside it, so that a resumed run
            compares against the best so far), without the optimizer's state
            unless `include_optimizer`.
        verbose: print the metrics of each evaluation.
        progress: show the feature-extraction progress (default: `verbose`).
        include_optimizer: save `best_path` with the optimizer's state too.

    Example:
    ```python
    market = Market1501("data/market1501")
    model.fit(data.dataset, steps_per_epoch=data.steps_per_epoch, epochs=120, callbacks=[
        RankValidation(market),
        keras.callbacks.EarlyStopping("val_mAP", mode="max", patience=5, restore_best_weights=True),
        keras.callbacks.ModelCheckpoint("best.keras", monitor="val_mAP", mode="max", save_best_only=True),
    ])
    history.history["val_rank1"]
    ```
    """

    KEYS = ("val_rank1", "val_mAP", "val_mINP")

    def __init__(
        self,
        query,
        gallery=None,
        image_size=None,
        every=1,
        batch_size=64,
        flip=True,
        best_path=None,
        verbose=True,
        progress=None,
        include_optimizer=False,
    ):
        super().__init__()
        if gallery is None and hasattr(query, "gallery"):
            query, gallery = query.query, query.gallery
        for name, samples in (("query", query), ("gallery", gallery)):
            if samples is None or not len(samples):
                raise ValueError(f"RankValidation: the {name} list is empty (give a dataset's .{name}).")
            bad = next((s for s in samples if not hasattr(s, "__len__") or isinstance(s, str) or len(s) != 3), None)
            if bad is not None:
                raise ValueError(f"RankValidation: {name} samples must be (path, pid, camid), got {bad!r}.")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"RankValidation: every must be an int ≥ 1, got {every!r}.")
        self.query, self.gallery = list(query), list(gallery)
        self.image_size = None if image_size is None else tuple(int(s) for s in image_size)
        self.every = every
        self.batch_size = int(batch_size)
        self.flip = bool(flip)
        self.best_path = os.fspath(best_path) if best_path else None
        self.verbose = bool(verbose)
        self.progress = self.verbose if progress is None else bool(progress)
        self.include_optimizer = bool(include_optimizer)
        # The best mAP so far, read back from best.json when a run resumes.
        self.best = -1.0
        if self.best_path and os.path.isfile(self._json_path):
            with open(self._json_path) as f:
                self.best = float(json.load(f)["mAP"])

    @property
    def _json_path(self):
        return os.path.splitext(self.best_path)[0] + ".json"

    def metrics(self, model):
        """rank-1 / mAP / mINP (and the rest of `split_metrics`) of `model` on the query / gallery split."""
        from keras_mmga.evaluation.model_metrics import split_metrics

        size = self.image_size or tuple(model.input_shape[1:3])  # (None, H, W, C), MMGA or not
        result, _ = split_metrics(
            model, self.query, self.gallery, size, self.batch_size, self.flip, verbose=self.progress
        )
        return result

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or not _finite(logs):
            return
        last = epoch + 1 == self.params.get("epochs")
        if (epoch + 1) % self.every and not last:
            return
        result = self.metrics(self.model)
        logs.update(val_rank1=result["rank1"], val_mAP=result["mAP"], val_mINP=result["mINP"])
        if self.verbose:
            print(
                f"\nEpoch {epoch + 1}: rank-1 {result['rank1']:.2%}  mAP {result['mAP']:.2%}  mINP {result['mINP']:.2%}"
            )
        if self.best_path and result["mAP"] > self.best:
            self.best = result["mAP"]
            save_model(self.model, self.best_path, self.include_optimizer)
            with open(self._json_path, "w") as f:
                json.dump(
                    {"epoch": epoch + 1, "rank1": result["rank1"], "mAP": result["mAP"], "mINP": result["mINP"]},
                    f,
                    indent=2,
                )
