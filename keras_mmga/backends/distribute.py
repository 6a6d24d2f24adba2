"""Cross-replica helpers for losses that must not depend on the replica count.

Under a `tf.distribute` strategy `train_step` runs once per replica on a slice
of the global batch and the optimizer sums the replicas' gradients. A loss that
is a mean over the batch is therefore split as `sum(local) / global_count`, and
losses that are not sums over samples (batch-hard mining over the whole batch,
an RMSE) are computed from all-gathered / all-reduced quantities. With one
device (or another backend) every helper here is the identity.
"""

import os

import keras


def _replica_context():
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return None
    return ctx


def num_replicas():
    """Number of replicas computing the current step (1 outside a strategy)."""
    ctx = _replica_context()
    return 1 if ctx is None else ctx.num_replicas_in_sync


def replica_id():
    """Index of the current replica in its sync group (0 outside a strategy)."""
    ctx = _replica_context()
    return 0 if ctx is None else ctx.replica_id_in_sync_group


def all_reduce_sum(x):
    """Sum of `x` over replicas; differentiable."""
    ctx = _replica_context()
    return x if ctx is None else ctx.all_reduce("sum", x)


def all_gather(x):
    """Concatenation of every replica's `x` along axis 0, in replica order."""
    ctx = _replica_context()
    return x if ctx is None else ctx.all_gather(x, axis=0)


def make_strategy(kind="one", devices=None):
    """The `tf.distribute` strategy for a training run.

    Args:
        kind: `"one"` (the default strategy: one device), `"mirrored"` (all
            local GPUs, or `devices`) or `"multiworker"` (several machines,
            configured by the `TF_CONFIG` environment variable).
        devices: optional device list for `"mirrored"`.

    Create the strategy before building the model and the dataset, and build
    and compile the model under `strategy.scope()`. `"multiworker"` also
    installs the `fit` workarounds of `multi_worker_workarounds`.
    """
    import tensorflow as tf

    if kind == "one":
        return tf.distribute.get_strategy()
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy(devices)
    if kind == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError(
                "strategy 'multiworker' needs the TF_CONFIG environment variable "
                '({"cluster": {"worker": [...]}, "task": {"type": "worker", "index": i}}).'
            )
        install_multi_worker_workarounds()
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"Unknown strategy {kind!r}: expected 'one', 'mirrored' or 'multiworker'.")


# Keras versions on which the two workarounds below were verified; on a newer
# Keras they are not installed (the upstream fix may have landed) and a warning
# says so.
_WORKAROUND_KERAS_VERSIONS = ("3.15.",)
_installed = False


def install_multi_worker_workarounds():
    """Makes `keras.Model.fit` work under `MultiWorkerMirroredStrategy`.

    Keras 3 `fit` fails there (keras-team/keras#20585):

    1. `TensorFlowTrainer._maybe_symbolic_build` reduces the first batch with
       `strategy.reduce("MEAN", batch, axis=None)`, which a collective
       multi-worker strategy cannot do eagerly ("Attempt to convert a value
       (PerReplica...)"). MMGA builds itself in its constructor, so the patched
       method builds from this worker's local replica batch instead.
    2. `reduce_per_replica` reduces the scalar logs with `axis=0` ("Invalid
       reduction dimension 0 for input with 0 dimensions"): the patched
       function reduces rank-0 values with `axis=None`.

    Both patches touch only the multi-worker code path and are idempotent.
    Returns True when installed.
    """
    global _installed
    if _installed:
        return True
    if not keras.__version__.startswith(_WORKAROUND_KERAS_VERSIONS):
        import warnings

        warnings.warn(
            f"keras_mmga's multi-worker fit workarounds were written for Keras "
            f"{', '.join(v + 'x' for v in _WORKAROUND_KERAS_VERSIONS)}; Keras {keras.__version__} "
            "is running without them.",
            stacklevel=2,
        )
        return False
    import tensorflow as tf
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer as tf_trainer

    original_reduce = tf_trainer.reduce_per_replica
    original_build = tf_trainer.TensorFlowTrainer._maybe_symbolic_build

    def reduce_per_replica(values, strategy, reduction):
        if not tf_trainer._collective_all_reduce_multi_worker(strategy) or reduction not in ("auto", "mean"):
            return original_reduce(values, strategy, reduction)

        def reduce_one(value):
            local = strategy.experimental_local_results(value)[0]
            axis = None if local.shape.rank == 0 else 0
            return strategy.reduce("MEAN", value, axis=axis)

        return tree.map_structure(reduce_one, values)

    def maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if strategy is None or not tf_trainer._collective_all_reduce_multi_worker(strategy):
            return original_build(self, iterator=iterator, data_batch=data_batch)
        if iterator is not None:
            for _, _, it in iterator:
                batch = next(it)
                data_batch = tree.map_structure(
                    lambda x: (
                        strategy.experimental_local_results(x)[0]
                        if isinstance(x, tf.distribute.DistributedValues)
                        else x
                    ),
                    batch,
                )
                break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    tf_trainer.reduce_per_replica = reduce_per_replica
    tf_trainer.TensorFlowTrainer._maybe_symbolic_build = maybe_symbolic_build
    _installed = True
    return True
