"""SGD with PyTorch semantics and per-group learning rates."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_mmga")
class ParamGroupSGD(keras.optimizers.Optimizer):
    """SGD exactly as `torch.optim.SGD` applies it, with parameter groups.

    Differences from `keras.optimizers.SGD`, all to reproduce PyTorch recipes:

    * weight decay is L2 added to the gradient (`g + wd·w`) before momentum, not
      decoupled decay;
    * the momentum buffer holds gradients, not learning-rate-scaled steps
      (`b = μ·b + g; w -= lr·b`), so halving the learning rate halves the next
      step immediately, as `StepLR` does in PyTorch;
    * a variable can belong to a group whose learning rate is
      `lr_scale × learning_rate` (PyTorch parameter groups that share one
      schedule). MMGA uses scale 0.5 for the backbone: 0.05 vs 0.1.

    Groups are assigned with `set_lr_scales` by the model's `compile()` (they
    name variables of one model instance, so they are not part of the config);
    the momentum buffers, the iteration count and the count of completed
    epochs are optimizer variables and are saved and restored with the model.

    With `count_epochs=True` and an `EpochStepDecay` learning rate, the
    learning rate is the schedule at `completed_epochs`, an optimizer variable
    that only `advance_epoch()` changes (the `EpochCounter` callback calls it
    at each epoch end; `MMGA.fit` adds that callback). The rate is constant
    within an epoch and the decay follows the epochs run, whatever their
    lengths, like PyTorch's `StepLR.step()` once per epoch. Because the
    counter is only assigned between epochs, a trainer that holds variables
    as state during an epoch (Keras's JAX trainer) sees the right value.

    Args:
        learning_rate: float or schedule, the base (head) learning rate.
        momentum: float, μ (0 disables the buffer).
        weight_decay: float, L2 coefficient added to every gradient.
        nesterov: bool, Nesterov momentum as PyTorch defines it.
        count_epochs: bool, evaluate an `EpochStepDecay` at the epoch counter
            rather than at `iterations // steps_per_epoch` (see above).
        **kwargs: standard optimizer arguments (`name`, `clipnorm`, ...).

    Example:
    ```python
    opt = ParamGroupSGD(learning_rate=0.1, momentum=0.9, weight_decay=5e-4)
    opt.set_lr_scale(backbone.trainable_variables, 0.5)  # backbone: a keras.Model
    ```
    """

    def __init__(
        self,
        learning_rate=0.1,
        momentum=0.9,
        weight_decay=5e-4,
        nesterov=False,
        count_epochs=False,
        name="param_group_sgd",
        **kwargs,
    ):
        kwargs.pop("weight_decay", None)
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"`momentum` must be in [0, 1), got {momentum}.")
        if weight_decay < 0:
            raise ValueError(f"`weight_decay` must be ≥ 0, got {weight_decay}.")
        self.momentum = float(momentum)
        self.l2_weight_decay = float(weight_decay)
        self.nesterov = bool(nesterov)
        self.count_epochs = bool(count_epochs)
        self._lr_scales = {}
        self._completed_epochs = None

    def set_lr_scale(self, variables, scale):
        """Puts `variables` in a group whose learning rate is `scale × lr`.

        Variables never named keep scale 1.0. Call before the first step (the
        scales are read when the train function is traced).
        """
        for variable in variables:
            self._lr_scales[self._var_key(variable)] = float(scale)

    def lr_scale(self, variable):
        return self._lr_scales.get(self._var_key(variable), 1.0)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.momentums = []
        if self.momentum > 0:
            self.momentums = [self.add_variable_from_reference(v, "momentum") for v in variables]
        # Last, so a checkpoint from before it existed is a prefix of the
        # variable list (see `load_own_variables`).
        self._completed_epochs = self.add_variable(
            (), initializer="zeros", dtype="int", aggregation="only_first_replica", name="completed_epochs"
        )

    @property
    def completed_epochs(self):
        """Epochs completed so far (optimizer variable; 0 before `build`)."""
        return 0 if self._completed_epochs is None else self._completed_epochs

    def advance_epoch(self):
        """Counts one more completed epoch. Call between epochs, never inside a step."""
        if self._completed_epochs is None:
            raise ValueError("The optimizer is not built yet: advance_epoch() counts epochs of a training run.")
        self._completed_epochs.assign(self._completed_epochs + 1)

    def _counts_epochs(self):
        return self.count_epochs and hasattr(self._learning_rate, "at_epoch")

    def _get_current_learning_rate(self):
        if self._counts_epochs():
            return self._learning_rate.at_epoch(self.completed_epochs)
        return super()._get_current_learning_rate()

    def load_own_variables(self, store):
        # Checkpoints written before the epoch counter existed hold every
        # variable but it: restore them and set the counter to the epoch the
        # old step-based schedule was at, so the learning rate continues.
        if self._completed_epochs is not None and len(store.keys()) == len(self.variables) - 1:
            for i, variable in enumerate(self.variables[:-1]):
                variable.assign(store[str(i)])
            steps = getattr(self._learning_rate, "steps_per_epoch", None)
            iterations = int(keras.ops.convert_to_numpy(self.iterations))
            self._completed_epochs.assign(iterations // steps if steps else 0)
            return
        super().load_own_variables(store)

    def update_step(self, gradient, variable, learning_rate):
        learning_rate = ops.cast(learning_rate, variable.dtype) * self.lr_scale(variable)
        gradient = ops.cast(gradient, variable.dtype)
        if self.l2_weight_decay:
            gradient = gradient + self.l2_weight_decay * variable
        if self.momentum > 0:
            buffer = self.momentums[self._get_variable_index(variable)]
            # PyTorch starts the buffer at the first gradient; a zero buffer
            # followed by b = μ·0 + g gives the same value.
            self.assign(buffer, self.momentum * buffer + gradient)
            gradient = gradient + self.momentum * buffer if self.nesterov else buffer
        self.assign_sub(variable, learning_rate * gradient)

    def get_config(self):
        config = super().get_config()
        config.update(
            momentum=self.momentum,
            weight_decay=self.l2_weight_decay,
            nesterov=self.nesterov,
            count_epochs=self.count_epochs,
        )
        return config
