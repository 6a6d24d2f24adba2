"""Per-step wall time of a `fit` call, shared by the benchmarks (imports Keras only, so any backend)."""

import time

import keras


class StepTimer(keras.callbacks.Callback):
    """Seconds of each training step; waits for the step's loss, since JAX dispatches asynchronously."""

    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if logs and "loss" in logs:
            keras.ops.convert_to_numpy(logs["loss"])
        self.seconds.append(time.perf_counter() - self._start)
