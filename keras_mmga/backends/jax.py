"""What MMGA does differently on the JAX backend: its training step and data parallelism.

Keras's JAX trainer is stateless: `fit` jit-compiles `train_step(state, data)`,
where `state` holds the current values of the trainable, non-trainable,
optimizer and metric variables, and the step returns their new values. The
step here is the one Keras documents for JAX (`stateless_call` inside a
function differentiated by `jax.value_and_grad`, `optimizer.stateless_apply`);
the network, the batch checks, the losses and the logged values are the
model's own, shared with the TensorFlow step.

Data parallelism is Keras's distribution API (`keras.distribution`): with
`DataParallel` the jitted step computes on the *global* batch, sharded over the
devices, and XLA inserts the reductions. Batch-hard mining, the attention RMSE
and the BatchNormalization statistics are therefore those of the global batch
without any cross-replica code (that code, for `tf.distribute`, is in
`keras_mmga.backends.distribute`).

Nothing here is imported unless the backend is JAX.
"""

import jax
import keras


def _stateless_forward(model, trainable, non_trainable, images, training):
    """`model.stateless_call`, but returning everything the losses need.

    `stateless_call` runs `call`, which in inference mode returns the feature
    alone; `test_step` also needs the logits and maps of inference mode.
    """
    mapping = list(zip(model.trainable_variables, trainable)) + list(zip(model.non_trainable_variables, non_trainable))
    with keras.StatelessScope(state_mapping=mapping) as scope:
        outputs = model.compute_outputs(images, training=training)
    return outputs, [scope.get_current_value(v) for v in model.non_trainable_variables]


def _stateless_losses(model, trainable, non_trainable, optimizer_variables, batch, training):
    """Forward pass and losses as a pure function of the variable values."""
    images, labels, masks, weights, sample_weight = batch
    outputs, non_trainable = _stateless_forward(model, trainable, non_trainable, images, training)
    loss, logs = model.compute_losses(outputs, labels, masks, weights, sample_weight)
    scaled = loss
    if training:
        # The loss scale of a LossScaleOptimizer (mixed_float16) is an
        # optimizer variable: read it from the state, not from the variable.
        mapping = list(zip(model.optimizer.variables, optimizer_variables))
        with keras.StatelessScope(state_mapping=mapping):
            scaled = model.optimizer.scale_loss(loss)
    return scaled, (logs, outputs, non_trainable)


def _stateless_update_trackers(model, metrics_variables, logs, labels, outputs):
    """`model.update_trackers` on the metric values in the state; returns (logs, new values)."""
    mapping = list(zip(model.metrics_variables, metrics_variables))
    with keras.StatelessScope(state_mapping=mapping) as scope:
        results = model.update_trackers(logs, labels, outputs)
    updated = []
    for variable in model.metrics_variables:
        value = scope.get_current_value(variable)
        updated.append(variable.value if value is None else value)
    return results, updated


def train_step(model, state, data):
    """One optimisation step of `model` (an `MMGA`) on JAX: `(logs, new_state)`."""
    trainable, non_trainable, optimizer_variables, metrics_variables = state
    batch = model.unpack_batch(data)
    grad_fn = jax.value_and_grad(_stateless_losses, argnums=1, has_aux=True)
    (_, (logs, outputs, non_trainable)), grads = grad_fn(
        model, trainable, non_trainable, optimizer_variables, batch, True
    )
    trainable, optimizer_variables = model.optimizer.stateless_apply(optimizer_variables, grads, trainable)
    results, metrics_variables = _stateless_update_trackers(model, metrics_variables, logs, batch[1], outputs)
    return results, (trainable, non_trainable, optimizer_variables, metrics_variables)


def test_step(model, state, data):
    """Losses and metrics of `model` on one batch, inference mode: `(logs, new_state)`."""
    trainable, non_trainable, metrics_variables = state
    batch = model.unpack_batch(data)
    _, (logs, outputs, non_trainable) = _stateless_losses(model, trainable, non_trainable, None, batch, False)
    results, metrics_variables = _stateless_update_trackers(model, metrics_variables, logs, batch[1], outputs)
    return results, (trainable, non_trainable, metrics_variables)


def enable_float64():
    """Lets a `dtype="float64"` model compute in float64 on JAX. Call before building anything.

    Two switches: JAX's own (`jax_enable_x64`; without it every float64 array
    is silently float32), and Keras's type promotion, which on every backend
    but TensorFlow maps float64 to float32 (Keras 3.15,
    `keras.src.backend.common.dtypes.BIT64_TO_BIT32_DTYPE`), so that, for
    example, BatchNormalization normalises a float64 model's activations in
    float32. float64 is for numerical checks (identities between backends
    and device counts); train in float32 or mixed precision.
    """
    jax.config.update("jax_enable_x64", True)
    from keras.src.backend.common import dtypes

    dtypes.BIT64_TO_BIT32_DTYPE["float64"] = "float64"


def make_distribution(kind="one", devices=None):
    """Sets (and returns) the Keras distribution for a JAX training run.

    Args:
        kind: `"one"` (no distribution: one device), `"data_parallel"` (the
            global batch split over `devices`, default all local devices) or
            `"multiprocess"` (data parallel over the devices of several
            processes, e.g. machines: first `keras.distribution.initialize()`,
            configured by `KERAS_DISTRIBUTION_JOB_ADDRESSES`,
            `KERAS_DISTRIBUTION_NUM_PROCESSES` and
            `KERAS_DISTRIBUTION_PROCESS_ID`).
        devices: optional list of device names (`"cpu:0"`, ...) for
            `"data_parallel"`.

    Call before building the model. The global batch must be divisible by the
    number of devices; each device then holds `batch / devices` images, and
    the step is the one-device step on the global batch (losses, mining and
    BatchNorm statistics included).
    """
    distribution = _data_parallel(kind, devices)
    keras.distribution.set_distribution(distribution)
    return distribution


def _data_parallel(kind, devices):
    """The `DataParallel` of `make_distribution(kind, devices)` (None for `"one"`), not set."""
    if kind == "one":
        return None
    if kind == "multiprocess":
        keras.distribution.initialize()
        devices = None
    elif kind != "data_parallel":
        raise ValueError(f"Unknown distribution {kind!r}: expected 'one', 'data_parallel' or 'multiprocess'.")
    return keras.distribution.DataParallel(devices=devices or keras.distribution.list_devices())


# The engine's `strategy` settings (named after tf.distribute's) → `make_distribution` kinds.
_STRATEGY_KINDS = {"one": "one", "mirrored": "data_parallel", "multiworker": "multiprocess"}


def training_distribution(strategy="one", devices=None):
    """The Keras distribution that the training engine's `strategy` setting means on JAX.

    Args:
        strategy: `"one"` (one device: None), `"mirrored"` (data parallel over
            `devices`, default every local device; None when there is only
            one and no `devices` are named) or `"multiworker"` (data parallel over the devices of
            every process, see `make_distribution("multiprocess")`).
        devices: optional device names for `"mirrored"`, JAX's (`"gpu:1"`) or
            TensorFlow's (`"/gpu:1"`, `"/device:GPU:1"`) spelling.

    Returns:
        `(distribution, num_devices, process_index)`: the `DataParallel` or
        None, the devices that share each global batch, and this process's
        index (0 is the one that writes checkpoints and logs). The
        distribution is not set globally: build and train the model under
        its `scope()`, so that a later model in the same process is not
        distributed.
    """
    if strategy not in _STRATEGY_KINDS:
        raise ValueError(f"Unknown strategy {strategy!r}: expected one of {tuple(_STRATEGY_KINDS)}.")
    kind = _STRATEGY_KINDS[strategy]
    if kind == "data_parallel":
        if devices:
            devices = [_jax_device_name(d) for d in devices]
        elif len(keras.distribution.list_devices()) == 1:
            kind = "one"  # nothing to distribute over
    distribution = _data_parallel(kind, devices)
    num_devices = 1 if distribution is None else len(distribution.device_mesh.devices.flatten())
    return distribution, num_devices, jax.process_index()


def _jax_device_name(name):
    """`"/device:GPU:1"`, `"/gpu:1"` or `"gpu:1"` → `"gpu:1"` (how `keras.distribution` lists JAX devices)."""
    text = str(name).strip().lower()
    text = text.rsplit("/", 1)[-1]
    if text.startswith("device:"):
        text = text[len("device:") :]
    kind, _, index = text.partition(":")
    if kind not in ("cpu", "gpu", "tpu") or not index.isdigit():
        raise ValueError(f"Device {name!r} is not a device name such as 'gpu:0' or '/gpu:0'.")
    return f"{kind}:{int(index)}"


def has_gpu():
    """Whether JAX computes on a GPU by default (what picks the mixed-precision policy)."""
    return jax.default_backend() == "gpu"
