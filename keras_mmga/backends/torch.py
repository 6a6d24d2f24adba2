"""What MMGA does differently on the PyTorch backend: its training step.

Keras's PyTorch trainer runs `train_step(data)` eagerly: the loss is
differentiated with `loss.backward()` into each variable's `.grad`, and the
optimizer applies those under `torch.no_grad()`. The network, batch checks,
losses and logged values are the model's own, shared with the TensorFlow and
JAX steps. Not tested in CI (the PyPI wheel of PyTorch brings ~4 GB of CUDA
libraries); see the README's "Backends".

Nothing here is imported unless the backend is PyTorch.
"""

import torch


def train_step(model, data):
    images, labels, masks, weights, sample_weight = model.unpack_batch(data)
    model.zero_grad()
    outputs = model.compute_outputs(images, training=True)
    loss, logs = model.compute_losses(outputs, labels, masks, weights, sample_weight)
    model.optimizer.scale_loss(loss).backward()
    variables = model.trainable_variables[:]
    gradients = [v.value.grad for v in variables]
    with torch.no_grad():
        model.optimizer.apply(gradients, variables)
    return model.update_trackers(logs, labels, outputs)


def test_step(model, data):
    images, labels, masks, weights, sample_weight = model.unpack_batch(data)
    with torch.no_grad():
        outputs = model.compute_outputs(images, training=False)
        _, logs = model.compute_losses(outputs, labels, masks, weights, sample_weight)
    return model.update_trackers(logs, labels, outputs)
