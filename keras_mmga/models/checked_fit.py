"""The Keras training API of `MMGA`, with its input checks and epoch counting.

`fit`, `evaluate`, `predict` and the `*_on_batch` methods check what they get
(`keras_mmga.models.batch_inputs`) before Keras sees it, so bad input fails
with one line naming the argument; `fit` also puts the `EpochCounter` that
drives the learning-rate decay first in the callbacks.
"""

import keras

# The module, not its names (the import rule: keras_mmga.lazy).
from keras_mmga import optimizers
from keras_mmga.models import batch_inputs, compile_setup


class CheckedFitModel(keras.Model):
    """`keras.Model` whose training and inference methods check their inputs (base of `MMGA`).

    Subclasses provide what the checks read: `input_shape`, `num_classes`,
    `attention_size`, `mask_supervised`, `mask_mode`, `parts`, `variant`.
    """

    def fit(
        self,
        x=None,
        y=None,
        batch_size=None,
        epochs=1,
        verbose="auto",
        callbacks=None,
        validation_split=0.0,
        validation_data=None,
        shuffle=None,
        class_weight=None,
        sample_weight=None,
        initial_epoch=0,
        steps_per_epoch=None,
        **kwargs,
    ):
        """`keras.Model.fit` with MMGA's checks and epoch counting.

        Differences from Keras:

        * the inputs are checked (see `keras_mmga.models.input_checks`): image
          size and channels against the model's input, labels, masks and
          sample weights, with one-line errors;
        * an `EpochCounter` callback is put first in `callbacks`: it advances
          the optimizer's epoch counter, which drives the learning-rate decay;
        * `shuffle` defaults to `True` for arrays only (a dataset or
          generator is not shuffled by Keras; the flag would only warn);
        * `sample_weight` weights every loss term per image (see
          `keras_mmga.models.step_losses`); `class_weight` is refused.
        """
        if class_weight is not None:
            raise ValueError(
                "MMGA does not take class_weight (its targets are a dict of labels and masks, and the PK "
                "batches already balance identities): pass per-image weights as sample_weight, e.g. "
                "sample_weight=np.vectorize(class_weight.get)(labels)."
            )
        batch_inputs.check_call(self, x, y, sample_weight, "fit")
        if isinstance(validation_data, (tuple, list)):
            batch_inputs.check_call(self, *(tuple(validation_data) + (None,))[:3], "fit(validation_data=...)")
        self._prepare_schedule(x, batch_size, steps_per_epoch)
        if shuffle is None:
            shuffle = not batch_inputs.is_stream(x)
        callbacks = list(callbacks or [])
        if not any(isinstance(c, optimizers.EpochCounter) for c in callbacks):
            # First: callbacks that save at the epoch end save the new count.
            callbacks.insert(0, optimizers.EpochCounter())
        with batch_inputs.input_errors():
            return super().fit(
                x,
                y,
                batch_size=batch_size,
                epochs=epochs,
                verbose=verbose,
                callbacks=callbacks,
                validation_split=validation_split,
                validation_data=validation_data,
                shuffle=shuffle,
                sample_weight=sample_weight,
                initial_epoch=initial_epoch,
                steps_per_epoch=steps_per_epoch,
                **kwargs,
            )

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None, *args, **kwargs):
        """`keras.Model.evaluate` with the input checks of `fit`."""
        batch_inputs.check_call(self, x, y, sample_weight, "evaluate")
        with batch_inputs.input_errors():
            return super().evaluate(x, y, batch_size, verbose, sample_weight, *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        """`keras.Model.predict` with the image checks of `fit`."""
        batch_inputs.check_call(self, x, None, None, "predict")
        with batch_inputs.input_errors():
            return super().predict(x, *args, **kwargs)

    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None, return_dict=False):
        if class_weight is not None:
            raise ValueError("MMGA does not take class_weight: pass per-image weights as sample_weight.")
        batch_inputs.check_call(self, x, y, sample_weight, "train_on_batch")
        with batch_inputs.input_errors():
            return super().train_on_batch(x, y, sample_weight=sample_weight, return_dict=return_dict)

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        batch_inputs.check_call(self, x, y, sample_weight, "test_on_batch")
        with batch_inputs.input_errors():
            return super().test_on_batch(x, y, sample_weight=sample_weight, return_dict=return_dict)

    def predict_on_batch(self, x):
        batch_inputs.check_call(self, x, None, None, "predict_on_batch")
        with batch_inputs.input_errors():
            return super().predict_on_batch(x)

    def _prepare_schedule(self, x, batch_size, steps_per_epoch):
        """Checks that the learning-rate decay can count epochs of this `fit`."""
        optimizer = compile_setup.inner_optimizer(getattr(self, "optimizer", None))
        schedule = getattr(optimizer, "_learning_rate", None)
        if not isinstance(schedule, optimizers.EpochStepDecay):
            return
        steps = steps_per_epoch or batch_inputs.known_length(x, batch_size)
        if steps is None and batch_inputs.is_endless(x):
            raise ValueError(
                "The learning-rate decay is counted in epochs: pass steps_per_epoch to fit() "
                "(an endless dataset, e.g. the PK stream, never ends an epoch)."
            )
        counted = isinstance(optimizer, optimizers.ParamGroupSGD) and optimizer._counts_epochs()
        if schedule.steps_per_epoch is None:
            if steps is None and not counted:
                raise ValueError(
                    "The learning-rate decay is counted in epochs: pass steps_per_epoch to fit() or compile()."
                )
            if steps is not None:
                # For reference (and for optimizers that count steps).
                schedule.steps_per_epoch = int(steps)
                self._loss_config["steps_per_epoch"] = int(steps)
        elif not counted and steps is not None and int(steps) != schedule.steps_per_epoch:
            raise ValueError(
                f"This optimizer ({type(optimizer).__name__}) evaluates EpochStepDecay at "
                f"iterations // {schedule.steps_per_epoch}, but this fit runs {steps} steps per epoch: the decay "
                "would not follow the epochs. Use ParamGroupSGD (compile's default), which counts epochs."
            )
