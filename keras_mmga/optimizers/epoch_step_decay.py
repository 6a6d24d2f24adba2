"""Step learning-rate decay counted in epochs."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_mmga")
class EpochStepDecay(keras.optimizers.schedules.LearningRateSchedule):
    """`lr = initial · rate ^ floor(epoch / decay_epochs)`, like PyTorch's StepLR.

    The optimizer counts steps, so the epoch is `step // steps_per_epoch`.
    `steps_per_epoch` may be left `None` at construction; `MMGA.fit` fills it in
    from its own `steps_per_epoch` (or the dataset's length) before training.

    Args:
        initial_learning_rate: float, learning rate of epoch 0.
        decay_epochs: int, epochs between decays (paper: 90).
        decay_rate: float, factor at each decay (paper: 0.5).
        steps_per_epoch: int or None, optimizer steps in one epoch.

    Example:
    >>> schedule = EpochStepDecay(0.1, decay_epochs=90, decay_rate=0.5, steps_per_epoch=100)
    >>> float(schedule(9000))
    0.05
    """

    def __init__(self, initial_learning_rate, decay_epochs=90, decay_rate=0.5, steps_per_epoch=None):
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
        epoch = ops.floor_divide(ops.cast(step, "int64"), self.steps_per_epoch)
        exponent = ops.cast(ops.floor_divide(epoch, self.decay_epochs), "float32")
        return self.initial_learning_rate * ops.power(self.decay_rate, exponent)

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_epochs": self.decay_epochs,
            "decay_rate": self.decay_rate,
            "steps_per_epoch": self.steps_per_epoch,
        }
