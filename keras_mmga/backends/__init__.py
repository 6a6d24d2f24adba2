"""What differs per Keras backend: each backend's train / test step, and TensorFlow's distribution helpers.

- `keras_mmga.backends.tensorflow`: `train_step` / `test_step` under a
  `tf.distribute` strategy (losses reduced by `distribute`).
- `keras_mmga.backends.jax`: the stateless step, the `DataParallel`
  distribution, the float64 switch.
- `keras_mmga.backends.torch`: the PyTorch step.
- `keras_mmga.backends.distribute`: TensorFlow cross-replica helpers,
  strategy choice and Keras multi-worker workarounds.

Nothing is imported here: a module imports only its own backend's
framework, so `MMGA` imports the step module of the backend it runs on
(`keras_mmga.models.mmga`, an explicit table) and no other.
"""
