"""Cross-replica helpers for losses that must not depend on the replica count.

Under a `tf.distribute` strategy `train_step` runs once per replica on a slice
of the global batch and the optimizer sums the replicas' gradients. A loss that
is a mean over the batch is therefore split as `sum(local) / global_count`, and
losses that are not sums over samples (batch-hard mining over the whole batch,
an RMSE) are computed from all-gathered / all-reduced quantities. With one
device (or another backend) every helper here is the identity.
"""

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
