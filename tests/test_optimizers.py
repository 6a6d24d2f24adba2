import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_mmga.optimizers import EpochStepDecay, ParamGroupSGD


def _torch_sgd_reference(w, grads, lrs, momentum, wd):
    """torch.optim.SGD's update rule, written out (dampening 0, no Nesterov)."""
    buf = None
    for g, lr in zip(grads, lrs):
        d = g + wd * w
        buf = d if buf is None else momentum * buf + d
        w = w - lr * buf
    return w


def test_matches_pytorch_rule_with_group_scale_and_lr_change():
    rng = np.random.RandomState(0)
    w0 = rng.normal(size=(3, 2)).astype("float64")
    grads = [rng.normal(size=(3, 2)) for _ in range(4)]
    a = keras.Variable(w0.astype("float32"))
    b = keras.Variable(w0.astype("float32"))
    # Halves after 2 steps: PyTorch's StepLR changes the step, not the buffer.
    schedule = EpochStepDecay(0.1, decay_epochs=1, decay_rate=0.5, steps_per_epoch=2)
    opt = ParamGroupSGD(learning_rate=schedule, momentum=0.9, weight_decay=5e-4)
    opt.set_lr_scale([a], 0.5)
    for g in grads:
        opt.apply([tf.constant(g, tf.float32)] * 2, [a, b])
    lrs = [0.1, 0.1, 0.05, 0.05]
    np.testing.assert_allclose(
        a.numpy(), _torch_sgd_reference(w0, grads, [0.5 * lr for lr in lrs], 0.9, 5e-4), rtol=1e-5
    )
    np.testing.assert_allclose(b.numpy(), _torch_sgd_reference(w0, grads, lrs, 0.9, 5e-4), rtol=1e-5)


def test_schedule_halves_every_decay_epochs():
    schedule = EpochStepDecay(0.1, decay_epochs=90, decay_rate=0.5, steps_per_epoch=10)
    values = [float(schedule(step)) for step in (0, 899, 900, 1799, 1800, 8999)]
    assert values == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.1 * 0.5**9])
    with pytest.raises(ValueError, match="steps_per_epoch"):
        EpochStepDecay(0.1)(0)


def test_config_round_trip():
    opt = ParamGroupSGD(learning_rate=EpochStepDecay(0.2, 3, 0.1, 7), momentum=0.5, weight_decay=1e-3, nesterov=True)
    clone = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
    assert isinstance(clone, ParamGroupSGD)
    assert (clone.momentum, clone.l2_weight_decay, clone.nesterov) == (0.5, 1e-3, True)
    assert clone._learning_rate.get_config() == opt._learning_rate.get_config()


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="momentum"):
        ParamGroupSGD(momentum=1.5)
    with pytest.raises(ValueError, match="weight_decay"):
        ParamGroupSGD(weight_decay=-1)
