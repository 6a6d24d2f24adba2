"""Step learning-rate decay counted in epochs."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_mmga")
class EpochStepDecay(keras.optimizers.schedules.LearningRateSchedule):
    """`lr = initial · rate ^ floor(epoch / decay_epochs)`, like PyTorch's StepLR.

    The epoch comes from one of two places:

    * `at_epoch(epoch)`: the epochs actually run. `ParamGroupSGD` with
      `count_epochs=True` (what `MMGA.compile()` builds) evaluates the schedule
      at its persistent `completed_epochs` counter, which the `EpochCounter`
      callback that `MMGA.fit` adds advances at each epoch end. The decay then
      follows the epochs the user ran, whatever their lengths, across `fit`
      calls, save / load and `BackupAndRestore` resume.
    * `schedule(step)` (how any Keras optimizer calls a schedule): the epoch
      is `step // steps_per_epoch`, which needs a fixed `steps_per_epoch`.

    Args:
        initial_learning_rate: float, learning rate of epoch 0.
        decay_epochs: int, epochs between decays (paper: 90).
        decay_rate: float, factor at each decay (paper: 0.5).
        steps_per_epoch: int or None, optimizer steps in one epoch, used only
            when the schedule is called with a step. `MMGA.fit` records its
            first epoch length here when it is `None`.

    Example:
    ```python
    schedule = EpochStepDecay(0.1, decay_epochs=90, decay_rate=0.5, steps_per_epoch=100)
    round(float(schedule(9000)), 6)
    round(float(schedule.at_epoch(180)), 6)
    ```
    """

    def __init__(self, initial_learning_rate, decay_epochs=90, decay_rate=0.5, steps_per_epoch=None):
        if int(decay_epochs) < 1:
            raise ValueError(f"decay_epochs must be ≥ 1, got {decay_epochs}.")
        if not float(decay_rate) > 0:
            raise ValueError(f"decay_rate must be > 0, got {decay_rate}.")
        if steps_per_epoch is not None and int(steps_per_epoch) < 1:
            raise ValueError(f"steps_per_epoch must be ≥ 1 or None, got {steps_per_epoch}.")
        self.initial_learning_rate = float(initial_learning_rate)
        self.decay_epochs = int(decay_epochs)
        self.decay_rate = float(decay_rate)
        self.steps_per_epoch = None if steps_per_epoch is None else int(steps_per_epoch)

    def __call__(self, step):
        if self.steps_per_epoch is None:
            raise ValueError(
                "EpochStepDecay.steps_per_epoch is not set: pass steps_per_epoch to "
                "MMGA.compile() or MMGA.fit(), or set it on the schedule."
            )
        # int32, not int64: JAX without x64 has no int64 (it truncates, with a
        # warning), and 2^31 steps is far beyond any schedule.
        return self.at_epoch(ops.floor_divide(ops.cast(step, "int32"), self.steps_per_epoch))

    def at_epoch(self, epoch):
        """The learning rate of (0-based) epoch `epoch` (int or int tensor)."""
        exponent = ops.cast(ops.floor_divide(ops.cast(epoch, "int32"), self.decay_epochs), "float32")
        return self.initial_learning_rate * ops.power(self.decay_rate, exponent)

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_epochs": self.decay_epochs,
            "decay_rate": self.decay_rate,
            "steps_per_epoch": self.steps_per_epoch,
        }
