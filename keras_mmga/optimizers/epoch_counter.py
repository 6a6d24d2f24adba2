"""Callback that counts completed epochs on the optimizer."""

import keras


class EpochCounter(keras.callbacks.Callback):
    """Advances the optimizer's `completed_epochs` at the end of every epoch.

    `MMGA.fit` puts it first in the callback list, so that callbacks which
    save state at the epoch end (`BackupAndRestore`, `ModelCheckpoint`) save
    the counter of the epoch just finished, and those that read the learning
    rate at the next epoch's start see the decayed value. It does nothing for
    an optimizer without an epoch counter (`ParamGroupSGD.advance_epoch`).

    Example:
    ```python
    model.fit(data, epochs=3, steps_per_epoch=100)  # MMGA.fit adds it itself
    model.optimizer.completed_epochs  # 3
    ```
    """

    def on_epoch_end(self, epoch, logs=None):
        optimizer = getattr(self.model, "optimizer", None)
        optimizer = getattr(optimizer, "inner_optimizer", optimizer)  # LossScaleOptimizer
        if hasattr(optimizer, "advance_epoch"):
            optimizer.advance_epoch()
