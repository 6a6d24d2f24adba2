"""Losses of MMGA (paper eq. 3–9), written with `keras.ops`.

* `batch_hard_triplet_loss`: batch-hard triplet on L2-normalised features;
* `attention_rmse`: mask-guided attention loss of one spatial map (eq. 3–4);
* `attention_loss`: the sum of eq. 5 over MMGA's four maps;
* `softmax_loss`: identity cross-entropy (eq. 6–7);
* `total_loss`: eq. 9.

The `*_terms` functions return the per-sample pieces that
`keras_mmga.models.step_losses` combines across replicas (for the steps of
`keras_mmga.backends`); the plain functions are their single-device means.
"""

from keras import ops

# Squared distances are clamped here before the square root: the gradient of
# sqrt at 0 is infinite, and identical features (a collapsed model, or an image
# and its duplicate) are common in re-ID batches.
_MIN_SQUARED_DISTANCE = 1e-12
_EPSILON = 1e-12
_FLAT_MAP_RANGE = 1e-6


def loss_dtype(x):
    """float32, or float64 for float64 inputs: losses never run in half precision."""
    return "float64" if ops.convert_to_tensor(x).dtype == "float64" else "float32"


def _float(x, dtype=None):
    x = ops.convert_to_tensor(x)
    return ops.cast(x, dtype or loss_dtype(x))


def pairwise_distances(a, b):
    """Euclidean distances between rows of `a` (N, D) and `b` (M, D), (N, M).

    Finite gradient everywhere, including at zero distance.
    """
    a = _float(a)
    b = _float(b, a.dtype)
    squared = (
        ops.sum(ops.square(a), axis=1)[:, None]
        + ops.sum(ops.square(b), axis=1)[None, :]
        - 2.0 * ops.matmul(a, ops.transpose(b))
    )
    return ops.sqrt(ops.maximum(squared, _MIN_SQUARED_DISTANCE))


def batch_hard_triplet_terms(
    labels, features, candidate_labels=None, candidate_features=None, anchor_index=None, margin=0.3
):
    """Per-anchor batch-hard triplet hinge and a validity flag.

    For each anchor: the farthest positive among the candidates other than the
    anchor itself, the closest negative, and `max(0, d_ap - d_an + margin)`.
    An anchor without another image of its identity, or without any image of
    another identity, among the candidates has no triplet: its flag is 0 and its
    hinge 0, and it is left out of the mean.

    Args:
        labels: int tensor (N,), identities of the anchors.
        features: float tensor (N, D) of the anchors.
        candidate_labels, candidate_features: the set mined over (M,), (M, D);
            defaults to the anchors themselves. Under a strategy this is the
            all-gathered global batch.
        anchor_index: int tensor (N,), position of each anchor among the
            candidates (to exclude it from its own positives); defaults to
            `0..N-1`.
        margin: float, the triplet margin (paper: 0.3).

    Returns:
        `(hinge, valid)`, both (N,), float32 (float64 for float64 features).
    """
    if candidate_labels is None:
        candidate_labels, candidate_features = labels, features
    n = ops.shape(features)[0]
    m = ops.shape(candidate_features)[0]
    if anchor_index is None:
        anchor_index = ops.arange(n)
    labels = ops.reshape(ops.cast(labels, "int32"), (-1,))
    candidate_labels = ops.reshape(ops.cast(candidate_labels, "int32"), (-1,))
    distances = pairwise_distances(features, candidate_features)

    same = ops.equal(labels[:, None], candidate_labels[None, :])
    is_self = ops.equal(ops.cast(anchor_index, "int32")[:, None], ops.arange(m, dtype="int32")[None, :])
    positive = ops.logical_and(same, ops.logical_not(is_self))
    negative = ops.logical_not(same)

    # Distances are ≥ 0, so 0 is a neutral fill for the max; for the min, a fill
    # above every real distance.
    hardest_positive = ops.max(ops.where(positive, distances, 0.0), axis=1)
    far = ops.max(distances) + 1.0
    hardest_negative = ops.min(ops.where(negative, distances, far), axis=1)
    valid = ops.logical_and(ops.any(positive, axis=1), ops.any(negative, axis=1))
    valid = ops.cast(valid, distances.dtype)
    hinge = ops.relu(hardest_positive - hardest_negative + margin) * valid
    return hinge, valid


def batch_hard_triplet_loss(labels, features, margin=0.3):
    """Batch-hard triplet loss (Hermans et al. 2017), mean over valid anchors.

    Args:
        labels: int tensor (N,) of identities.
        features: float tensor (N, D); MMGA passes the L2-normalised feature.
        margin: float, the margin (paper: 0.3).

    Returns:
        Scalar float32: mean hinge over anchors that have both a positive (not
        themselves) and a negative in the batch; 0 when no anchor does.

    Example:
    ```python
    labels = keras.ops.convert_to_tensor([0, 0, 1, 1])
    feats = keras.ops.convert_to_tensor([[1., 0.], [0.8, 0.6], [0., 1.], [0.6, 0.8]])
    float(batch_hard_triplet_loss(labels, feats))  # doctest: +ELLIPSIS
    ```
    """
    hinge, valid = batch_hard_triplet_terms(labels, features, margin=margin)
    return ops.sum(hinge) / ops.maximum(ops.sum(valid), 1.0)


def min_max_normalize(maps):
    """Per-image min-max normalisation of spatial maps (N, h, w) (paper eq. 3)."""
    maps = _float(maps)
    low = ops.min(maps, axis=(1, 2), keepdims=True)
    high = ops.max(maps, axis=(1, 2), keepdims=True)
    # A flat map (all values equal: common for maps computed in bfloat16 or
    # float16, whose values in (1, 2) are >= 1/1024 apart) has no shape to
    # normalise: dividing by ~0 sent a 1/ε gradient into the network. Below
    # _FLAT_MAP_RANGE the normalised map is 0 with a zero gradient; above it,
    # eq. 3 exactly.
    span = high - low
    flat = span <= _FLAT_MAP_RANGE
    safe = ops.where(flat, ops.ones_like(span), span)
    return ops.where(flat, ops.zeros_like(maps), (maps - low) / safe)


def attention_squared_errors(masks, maps):
    """Per-image `Σ_ij (M_ij − S_norm_ij)²` (N,) for masks and maps (N, h, w)."""
    normalized = min_max_normalize(maps)
    return ops.sum(ops.square(_float(masks, normalized.dtype) - normalized), axis=(1, 2))


def rmse_from_sums(squared_error_sum, count):
    """`sqrt(sum / count)` with a zero-safe gradient and count 0 giving 0."""
    count = ops.cast(count, squared_error_sum.dtype)
    rmse = ops.sqrt(ops.maximum(squared_error_sum / ops.maximum(count, 1.0), _EPSILON))
    return rmse * ops.cast(count > 0, rmse.dtype)


def attention_rmse(masks, maps, sample_weight=None):
    """Mask-guided attention loss of one map (paper eq. 3–4).

    `L = sqrt( Σ_n w_n Σ_ij (M_nij − S_norm_nij)² / Σ_n w_n )`: the squared
    error is summed over the map's pixels and averaged over the images of the
    batch (the paper's `n_batch`). Images with weight 0 (no mask available)
    neither contribute error nor count.

    Args:
        masks: (N, h, w) targets in [0, 1].
        maps: (N, h, w) spatial attention of the same size.
        sample_weight: optional (N,) 0/1 weights.

    Returns:
        Scalar float32.
    """
    errors = attention_squared_errors(masks, maps)
    if sample_weight is None:
        sample_weight = ops.ones_like(errors)
    sample_weight = ops.cast(sample_weight, errors.dtype)
    return rmse_from_sums(ops.sum(errors * sample_weight), ops.sum(sample_weight))


def attention_loss(masks, maps, sample_weight=None, part_weight=0.5, parts=None):
    """Eq. 5: `L(1,w) + L(2,w) + λ0·Σ_parts L(2,part)` (the paper's parts: upper, bottom).

    Args:
        masks: (N, h, w, 1 + K) targets, whole first, then one channel per
            part in the order of the maps (paper: whole, upper, bottom).
        maps: dict with `"module1_whole"`, `"module2_whole"` and optionally
            one `"module2_<part>"` per part, each (N, h, w).
        sample_weight: optional (N,) per-image weights.
        part_weight: λ0 (paper: 0.5), the weight of every part map.
        parts: the part names in mask-channel order (default: upper, bottom).
    """
    total = 0.0
    for name, channel, weight in attention_map_weights(maps, part_weight, parts):
        total += weight * attention_rmse(masks[..., channel], maps[name], sample_weight)
    return total


# Which mask channel supervises which spatial map, for the paper's two parts.
MASK_CHANNEL = {"module1_whole": 0, "module2_whole": 0, "module2_upper": 1, "module2_bottom": 2}


def attention_map_weights(maps, part_weight=0.5, parts=None):
    """`(name, mask channel, weight)` of each map in eq. 5.

    The whole maps (module 1 and module 2) have weight 1 and channel 0; the
    part maps `module2_<part>` weight λ0 and channel `1 + parts.index(part)`.
    `parts=None` is the paper's `("upper", "bottom")`. The order is module 1,
    module 2 whole, then the parts, whatever the order of `maps` (JAX and
    `tf.nest` sort dict keys).
    """
    parts = tuple(parts) if parts is not None else ("upper", "bottom")
    unknown = sorted(set(maps) - {"module1_whole", "module2_whole"} - {f"module2_{p}" for p in parts})
    if unknown:
        raise ValueError(f"attention maps {unknown} are not among the parts {list(parts)}.")
    terms = [(name, 0, 1.0) for name in ("module1_whole", "module2_whole") if name in maps]
    terms += [(f"module2_{p}", 1 + i, part_weight) for i, p in enumerate(parts) if f"module2_{p}" in maps]
    return terms


def softmax_loss(labels, logits):
    """Mean sparse categorical cross-entropy from logits (paper eq. 6–7)."""
    return ops.mean(softmax_terms(labels, logits))


def softmax_terms(labels, logits):
    """Per-sample cross-entropy (N,)."""
    labels = ops.reshape(ops.cast(labels, "int32"), (-1,))
    return ops.sparse_categorical_crossentropy(labels, _float(logits), from_logits=True)


def total_loss(whole_softmax, local_softmax, triplet, attention, triplet_weight=2.0, attention_weight=0.1):
    """Eq. 9: `L_w + L_l + λ1·L_triplet + λ2·L_att` (paper: λ1 = 2.0, λ2 = 0.1)."""
    return whole_softmax + local_softmax + triplet_weight * triplet + attention_weight * attention
