"""Callbacks of the training engine."""

import math
import os

import keras
import numpy as np


def _finite(logs):
    return all(math.isfinite(float(v)) for v in (logs or {}).values() if np.ndim(v) == 0)


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stops training at the first NaN/Inf loss and remembers where it happened."""

    def __init__(self):
        super().__init__()
        self.failure = None
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.failure = f"the loss became {float(loss)} at epoch {self.epoch + 1}, batch {batch + 1}"
            self.model.stop_training = True


class FiniteModelCheckpoint(keras.callbacks.Callback):
    """Saves the model at each epoch end unless the epoch's logs are not finite.

    Keras's ModelCheckpoint would overwrite the last good file with the
    diverged weights of an epoch that ended in NaN.
    """

    def __init__(self, path):
        super().__init__()
        self.path = os.fspath(path)

    def on_epoch_end(self, epoch, logs=None):
        if _finite(logs):
            self.model.save(self.path)


class RankEvaluation(keras.callbacks.Callback):
    """Evaluates rank-1 / mAP every `every` epochs; saves the best model by mAP.

    Adds `val_rank1`, `val_mAP` and `val_mINP` to the epoch logs (and so to the
    CSV log, TensorBoard and the history).
    """

    def __init__(self, evaluate_fn, every=1, best_path=None):
        super().__init__()
        self.evaluate_fn = evaluate_fn
        self.every = int(every)
        self.best_path = best_path
        self.best = -1.0

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or self.every <= 0 or (epoch + 1) % self.every:
            return
        result = self.evaluate_fn(self.model)
        logs.update(val_rank1=result["rank1"], val_mAP=result["mAP"], val_mINP=result["mINP"])
        print(f"\nEpoch {epoch + 1}: rank-1 {result['rank1']:.2%}  mAP {result['mAP']:.2%}  mINP {result['mINP']:.2%}")
        if self.best_path and result["mAP"] > self.best and _finite(logs):
            self.best = result["mAP"]
            self.model.save(self.best_path)
