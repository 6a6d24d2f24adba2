"""What MMGA does on the TensorFlow backend: its training and test steps.

The gradient is taken with `tf.GradientTape` through the loss as the
optimizer scales it (mixed_float16); the network, batch checks, losses and
logged values are the model's own, shared with the JAX and PyTorch steps
(`keras_mmga.backends.jax`, `keras_mmga.backends.torch`). Under a
`tf.distribute` strategy each replica runs this on its slice of the batch and
`keras_mmga.backends.distribute` reduces the losses.

Nothing here is imported unless the backend is TensorFlow.
"""

import tensorflow as tf


def train_step(model, data):
    images, labels, masks, weights, sample_weight = model.unpack_batch(data)
    with tf.GradientTape() as tape:
        outputs = model.compute_outputs(images, training=True)
        loss, logs = model.compute_losses(outputs, labels, masks, weights, sample_weight)
        scaled = model.optimizer.scale_loss(loss)
    variables = model.trainable_variables
    model.optimizer.apply(tape.gradient(scaled, variables), variables)
    return model.update_trackers(logs, labels, outputs)


def test_step(model, data):
    images, labels, masks, weights, sample_weight = model.unpack_batch(data)
    outputs = model.compute_outputs(images, training=False)
    _, logs = model.compute_losses(outputs, labels, masks, weights, sample_weight)
    return model.update_trackers(logs, labels, outputs)
