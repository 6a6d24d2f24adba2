"""k-reciprocal re-ranking (Zhong et al., "Re-ranking Person Re-identification
with k-reciprocal Encoding", CVPR 2017).

Follows the authors' reference algorithm step by step, with the memory kept
to one dense (N, N) float32 matrix, N = Q + G (Market-1501: 19,281² × 4 B ≈
1.5 GB), instead of the reference's three plus a full int64 argsort:

- only the `max(k1 + 1, k2)` nearest neighbours of every sample are ranked
  (partition, then a stable sort of those), not the whole rows;
- the k-reciprocal feature vectors V are sparse (about k1 non-zeros a row)
  and kept as index/weight lists;
- the Jaccard distance is computed only for the query × gallery block.

V is float32 (the reference uses float16), so results agree with the
reference to float16 rounding, not bit for bit.
"""

import numpy as np

_ROW_BLOCK = 1024


def re_ranking(
    query_features=None,
    gallery_features=None,
    k1=20,
    k2=6,
    lambda_value=0.3,
    *,
    q_g_dist=None,
    q_q_dist=None,
    g_g_dist=None,
):
    """Query × gallery distances re-ranked with k-reciprocal encoding.

    final = (1 − λ)·d_Jaccard + λ·d_original, where d_original is the squared
    Euclidean distance with each row divided by its maximum over all
    (query + gallery) samples, and d_Jaccard compares the samples'
    k-reciprocal neighbour sets (expanded with their neighbours' `k1/2`
    reciprocal sets when those overlap by more than 2/3, weighted by
    `exp(−d)`, then averaged over each sample's `k2` nearest neighbours:
    query expansion).

    Pass either the features, or the three distance matrices (squared
    Euclidean, as `compute_distance_matrix` returns them).

    Args:
        query_features: (Q, D) features.
        gallery_features: (G, D) features.
        k1: size of the k-reciprocal neighbourhood (paper: 20).
        k2: neighbours averaged in the query expansion (paper: 6; 1 disables it).
        lambda_value: weight λ of the original distance (paper: 0.3).
        q_g_dist: (Q, G) distances, instead of the features.
        q_q_dist: (Q, Q) distances.
        g_g_dist: (G, G) distances.

    Returns:
        float32 (Q, G) distances, to rank as usual (`rank_metrics`).

    Example:
    ```python
    distmat = re_ranking(query_features, gallery_features)          # k1=20, k2=6, λ=0.3
    result = rank_metrics(distmat, q_pids, g_pids, q_camids, g_camids)
    ```
    """
    if k1 < 1 or k2 < 1 or not 0.0 <= lambda_value <= 1.0:
        raise ValueError(f"Need k1 >= 1, k2 >= 1 and 0 <= lambda_value <= 1; got {k1}, {k2}, {lambda_value}.")
    original, num_q = _original_distances(query_features, gallery_features, q_g_dist, q_q_dist, g_g_dist)
    n = original.shape[0]
    if n < 2:
        raise ValueError("Re-ranking needs at least two samples in all.")
    k1, k2 = min(k1, n - 1), min(k2, n)
    nearest = _nearest(original, max(k1 + 1, k2))

    # k-reciprocal feature vectors: V[i, j] = exp(-d_ij) / sum over i's expanded set, sparse.
    half = int(np.around(k1 / 2.0))
    v_cols, v_vals = [], []
    for i in range(n):
        neighbours = _k_reciprocal(nearest, i, k1)
        expansion = [neighbours]
        for candidate in neighbours:
            candidate_set = _k_reciprocal(nearest, candidate, half)
            # Expand only with candidates whose own set mostly lies in i's set (robust to outliers).
            if np.intersect1d(candidate_set, neighbours).size > 2.0 / 3.0 * candidate_set.size:
                expansion.append(candidate_set)
        expansion = np.unique(np.concatenate(expansion))
        weight = np.exp(-original[i, expansion].astype(np.float64))
        v_cols.append(expansion)
        v_vals.append(weight / weight.sum())

    if k2 > 1:
        # Query expansion: each vector becomes the mean of its k2 nearest neighbours' vectors.
        v_cols, v_vals = _average_rows(v_cols, v_vals, nearest[:, :k2], n)

    # Jaccard distance, query rows × gallery columns only, through an inverted index (column -> rows).
    rows = np.repeat(np.arange(n), [c.size for c in v_cols])
    cols, vals = np.concatenate(v_cols), np.concatenate(v_vals)
    gallery_entry = rows >= num_q
    by_column = np.argsort(cols[gallery_entry], kind="stable")
    inv_rows = rows[gallery_entry][by_column] - num_q
    inv_vals = vals[gallery_entry][by_column]
    inv_ptr = np.searchsorted(cols[gallery_entry][by_column], np.arange(n + 1))
    num_g = n - num_q
    jaccard = np.empty((num_q, num_g), np.float32)
    for i in range(num_q):
        starts, stops = inv_ptr[v_cols[i]], inv_ptr[v_cols[i] + 1]
        lengths = stops - starts
        # Every (shared column, gallery row) pair at once: positions into the inverted index.
        positions = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
        overlap = np.bincount(
            inv_rows[positions], np.minimum(np.repeat(v_vals[i], lengths), inv_vals[positions]), minlength=num_g
        )
        # Both vectors sum to 1: the union's mass is 2 − the intersection's.
        jaccard[i] = 1.0 - overlap / (2.0 - overlap)
    final = jaccard
    final *= 1.0 - lambda_value
    final += lambda_value * original[:num_q, num_q:]
    return final


def _original_distances(qf, gf, q_g, q_q, g_g):
    """Dense (N, N) float32 squared distances, each row divided by its maximum, and Q."""
    if qf is not None or gf is not None:
        if qf is None or gf is None or q_g is not None or q_q is not None or g_g is not None:
            raise ValueError("Pass query_features and gallery_features, or the three distance matrices, not both.")
        q = np.asarray(qf, np.float32)
        g = np.asarray(gf, np.float32)
        if q.ndim != 2 or g.ndim != 2 or q.shape[1] != g.shape[1]:
            raise ValueError(f"Features must be (Q, D) and (G, D) with the same D; got {q.shape} and {g.shape}.")
        feats = np.concatenate([q, g])
        sq = np.einsum("ij,ij->i", feats, feats)
        dist = feats @ (-2.0 * feats).T
        dist += sq[:, None]
        dist += sq[None, :]
        np.maximum(dist, 0.0, out=dist)
        num_q = q.shape[0]
    else:
        if q_g is None or q_q is None or g_g is None:
            raise ValueError("Pass the features, or all three of q_g_dist, q_q_dist and g_g_dist.")
        q_g, q_q, g_g = (np.asarray(d, np.float32) for d in (q_g, q_q, g_g))
        num_q, num_g = q_g.shape
        if q_q.shape != (num_q, num_q) or g_g.shape != (num_g, num_g):
            raise ValueError(
                f"Expected q_q_dist ({num_q}, {num_q}) and g_g_dist ({num_g}, {num_g}) for q_g_dist "
                f"{q_g.shape}; got {q_q.shape} and {g_g.shape}."
            )
        dist = np.block([[q_q, q_g], [q_g.T, g_g]])
    # The reference divides by column maxima then transposes; for a symmetric matrix that is the row maximum.
    dist /= np.maximum(dist.max(axis=1, keepdims=True), 1e-12)
    return dist, num_q


def _nearest(dist, k):
    """(N, k) indices of each row's k smallest entries, by (distance, index): a stable argsort's first k."""
    n = dist.shape[0]
    out = np.empty((n, k), np.int64)
    for start in range(0, n, _ROW_BLOCK):
        block = dist[start : start + _ROW_BLOCK]
        if k >= n:
            out[start : start + len(block)] = np.argsort(block, axis=1, kind="stable")[:, :k]
            continue
        kth = np.partition(block, k - 1, axis=1)[:, k - 1 : k]
        # Everything up to the k-th value (more than k only with ties), then sort those stably.
        flat = np.flatnonzero(block <= kth)
        rows = flat // n
        order = np.lexsort((flat, block.reshape(-1)[flat], rows))
        rank_in_row = np.arange(order.size) - np.searchsorted(rows[order], rows[order])
        keep = order[rank_in_row < k]
        out[start : start + len(block)] = (flat[keep] - rows[keep] * n).reshape(-1, k)
    return out


def _k_reciprocal(nearest, i, k):
    """Indices j among i's k + 1 nearest (i included) that have i among their own k + 1 nearest."""
    forward = nearest[i, : k + 1]
    backward = nearest[forward, : k + 1]
    return forward[np.any(backward == i, axis=1)]


def _average_rows(cols, vals, neighbours, n):
    """Sparse rows averaged over each row's neighbour rows: mean of V[neighbours[i]]."""
    scratch = np.zeros(n, np.float64)
    out_cols, out_vals = [], []
    k = neighbours.shape[1]
    for i in range(n):
        union = np.unique(np.concatenate([cols[j] for j in neighbours[i]]))
        for j in neighbours[i]:
            scratch[cols[j]] += vals[j]
        out_cols.append(union)
        out_vals.append(scratch[union] / k)
        scratch[union] = 0.0
    return out_cols, out_vals
