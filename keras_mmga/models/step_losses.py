"""The loss of one training step (eq. 9), assembled so that replicas add up to the global batch.

The train / test steps of `keras_mmga.backends` (`tensorflow`, `jax`,
`torch`; `MMGA.train_step` hands over to the one Keras runs on) differentiate
and log what `step_losses` returns; the terms are the functions of `keras_mmga.losses`.
"""

from keras import ops

from keras_mmga import losses
from keras_mmga.backends import distribute


def ratio(numerator, denominator):
    """`numerator / denominator`, 0 where the denominator is 0 (then so is the numerator)."""
    return numerator / ops.where(denominator > 0, denominator, ops.ones_like(denominator))


def step_losses(outputs, labels, masks, mask_weights, sample_weight, config, dtype, supervised, parts=None):
    """Per-replica loss to differentiate and the global values to log.

    Every term is split so that the sum over replicas is the loss of the whole
    global batch; the logged values are that global loss (on one device, or on
    JAX where the step computes on the global batch, they are the same).

    `sample_weight` (N,) weights each image's share of every term, as weighted
    means over the global batch: softmax `Σ w·ce / Σ w`, triplet
    `Σ w·hinge / Σ w·valid` over anchors (a weight-0 image still serves as a
    positive or negative for the others), attention per image together with
    `mask_weights` (`Σ w·m·err / Σ w·m` inside the RMSE). Without it every
    weight is 1 (exactly the unweighted loss). `mask_weights` of shape
    (N, 1 + K) weight each mask channel apart (whole, then each part: a part
    out of view has 0 for that image); each map's RMSE then sums and counts
    its own channel's weights.

    Args:
        outputs: the model's training outputs (`features`, `whole_logits`,
            optional `local_logits`, `attention_maps`).
        labels: int (N,). masks: (N, h, w, 1 + K) or None.
        mask_weights: (N,), (N, 1 + K) or None. sample_weight: (N,) or None.
        config: the compile settings (`keras_mmga.settings.COMPILE_DEFAULTS` keys).
        dtype: dtype of the losses (float32, or float64).
        supervised: bool, whether the attention maps are mask-supervised.
        parts: the part names, in mask-channel order (channel 0 is the whole).

    Returns:
        `(loss, logs)`: the replica's share of eq. 9, and a dict of the global
        `loss`, `whole_softmax`, `local_softmax` (part variants), `triplet`
        and `attention` (supervised variants).
    """
    replicas = distribute.num_replicas()
    if sample_weight is None:
        sample_weight = ops.ones_like(labels, dtype=dtype)
    sample_weight = ops.cast(sample_weight, dtype)
    weight_sum = distribute.all_reduce_sum(ops.sum(sample_weight))

    def softmax(logits):
        return ratio(ops.sum(sample_weight * losses.softmax_terms(labels, logits)), weight_sum)

    terms = {"whole_softmax": softmax(outputs["whole_logits"])}
    if "local_logits" in outputs:
        terms["local_softmax"] = softmax(outputs["local_logits"])
    terms["triplet"] = _triplet(outputs["features"], labels, sample_weight, config, replicas)
    logs = {k: distribute.all_reduce_sum(v) for k, v in terms.items()}

    attention = 0.0
    if supervised:
        mask_weights = ops.cast(mask_weights, dtype)
        if len(mask_weights.shape) == 2:
            weights = mask_weights * sample_weight[:, None]
        else:
            weights = mask_weights * sample_weight
        attention = _attention(outputs["attention_maps"], masks, weights, config, parts)
        logs["attention"] = attention
    # Every replica holds the same global RMSE; each contributes 1/R.
    total = losses.total_loss(
        terms["whole_softmax"],
        terms.get("local_softmax", 0.0),
        terms["triplet"],
        attention / replicas,
        triplet_weight=config["triplet_weight"],
        attention_weight=config["attention_weight"] if supervised else 0.0,
    )
    logs["loss"] = distribute.all_reduce_sum(total)
    return total, logs


def _triplet(features, labels, sample_weight, config, replicas):
    if config["cross_replica_triplet"] and replicas > 1:
        local = ops.shape(labels)[0]
        offset = ops.cast(distribute.replica_id(), "int32") * local
        hinge, valid = losses.batch_hard_triplet_terms(
            labels,
            features,
            distribute.all_gather(labels),
            distribute.all_gather(features),
            anchor_index=offset + ops.arange(local, dtype="int32"),
            margin=config["triplet_margin"],
        )
        return ratio(ops.sum(sample_weight * hinge), distribute.all_reduce_sum(ops.sum(sample_weight * valid)))
    hinge, valid = losses.batch_hard_triplet_terms(labels, features, margin=config["triplet_margin"])
    return ratio(ops.sum(sample_weight * hinge), ops.sum(sample_weight * valid)) / replicas


def _attention(maps, masks, weights, config, parts):
    """Eq. 5 over the global batch: each map's RMSE from all-reduced sums (weights (N,) or per channel (N, C))."""
    attention = 0.0
    for name, channel, weight in losses.attention_map_weights(maps, config["part_attention_weight"], parts):
        w = weights[:, channel] if len(weights.shape) == 2 else weights
        count = distribute.all_reduce_sum(ops.sum(w))
        errors = losses.attention_squared_errors(masks[..., channel], maps[name])
        error_sum = distribute.all_reduce_sum(ops.sum(errors * w))
        attention += weight * losses.rmse_from_sums(error_sum, count)
    return attention
