"""CMC, mAP and mINP under the Market-1501 protocol (as torchreid / fast-reid)."""

import numpy as np


def compute_distance_matrix(query_features, gallery_features, metric="euclidean"):
    """Query × gallery distances, float32.

    Args:
        query_features: (Q, D). gallery_features: (G, D).
        metric: `"euclidean"` (squared Euclidean, clamped at 0) or `"cosine"`
            (1 − cosine similarity). For L2-normalised features both give the
            same ranking (`‖a − b‖² = 2 − 2·cos`).
    """
    q = np.asarray(query_features, np.float32)
    g = np.asarray(gallery_features, np.float32)
    if q.ndim != 2 or g.ndim != 2 or q.shape[1] != g.shape[1]:
        raise ValueError(f"Features must be (Q, D) and (G, D) with the same D; got {q.shape} and {g.shape}.")
    if metric == "cosine":
        qn = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        gn = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)
        return 1.0 - qn @ gn.T
    if metric == "euclidean":
        dist = q @ g.T
        dist *= -2.0
        dist += np.sum(q * q, axis=1)[:, None]
        dist += np.sum(g * g, axis=1)[None, :]
        return np.maximum(dist, 0.0, out=dist)
    raise ValueError(f"metric must be 'euclidean' or 'cosine', got {metric!r}.")


def evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50):
    """Market-1501 single-query evaluation.

    For each query, gallery entries with the query's identity **and** camera
    are removed; a query with no remaining true match is skipped. The gallery
    is ranked by distance with ties broken by gallery order (a stable sort).
    AP is non-interpolated (mean over true matches of the precision at each
    match); mINP averages `#matches / rank of the hardest match` (Ye et al.,
    2021). Distractors (pid 0) and any other pid are ordinary non-matches.

    No gallery row is sorted: the rank of each true match is the number of
    valid entries before it (smaller distance, or equal distance and lower
    gallery index), counted with one `searchsorted` of the row against the
    query's few sorted match distances. Entries past the farthest match are
    skipped, since they cannot change the query's metrics.

    Args:
        distmat: (Q, G) distances.
        q_pids, g_pids, q_camids, g_camids: integer arrays.
        max_rank: length of the CMC curve (capped at the gallery size).

    Returns:
        Dict with `"cmc"` (float array of length max_rank, fractions),
        `"mAP"`, `"mINP"` (fractions) and `"num_valid_queries"`.

    Example:
    >>> r = evaluate_rank(np.array([[0.1, 0.5, 0.3]]), [1], [1, 2, 1], [0], [1, 1, 1], max_rank=3)
    >>> r["cmc"].tolist(), round(r["mAP"], 4)
    ([1.0, 1.0, 1.0], 1.0)
    """
    distmat = np.asarray(distmat)
    q_pids, g_pids = np.asarray(q_pids), np.asarray(g_pids)
    q_camids, g_camids = np.asarray(q_camids), np.asarray(g_camids)
    num_q, num_g = distmat.shape if distmat.ndim == 2 else (None, None)
    if num_q is None or len(q_pids) != num_q or len(q_camids) != num_q or len(g_pids) != num_g or len(g_camids) != num_g:
        raise ValueError(
            f"distmat {distmat.shape} does not match {len(q_pids)} query pids / {len(q_camids)} camids "
            f"and {len(g_pids)} gallery pids / {len(g_camids)} camids."
        )
    max_rank = min(int(max_rank), num_g)
    cmc_hits = np.zeros(max_rank, np.int64)
    aps, inps = [], []
    for i in range(num_q):
        row = distmat[i]
        same_pid = g_pids == q_pids[i]
        removed = same_pid & (g_camids == q_camids[i])
        matches = np.flatnonzero(same_pid & ~removed)
        if matches.size == 0:
            continue
        ranks = _match_ranks(row, matches, ~removed)
        if ranks[0] < max_rank:
            cmc_hits[ranks[0]:] += 1
        aps.append(np.mean(np.arange(1, ranks.size + 1) / (ranks + 1.0)))
        inps.append(ranks.size / (ranks[-1] + 1.0))
    if not aps:
        raise ValueError("No query has a true match in the gallery outside its own camera.")
    n = len(aps)
    return {"cmc": cmc_hits / n, "mAP": float(np.mean(aps)), "mINP": float(np.mean(inps)), "num_valid_queries": n}


def _match_ranks(row, matches, valid):
    """0-based ranks, among the valid entries of `row`, of the entries `matches`.

    Ranking is by distance, ties broken by index (a stable sort's order).
    """
    order = np.lexsort((matches, row[matches]))
    thresholds, threshold_index = row[matches][order], matches[order]
    keep = valid & (row <= thresholds[-1])  # later entries rank after every match
    entries = np.flatnonzero(keep)
    values = row[entries]
    if thresholds.size <= 32:
        # A few vectorised passes beat a binary search per entry.
        below = np.array([np.count_nonzero(values < t) for t in thresholds])
        at_most = np.array([np.count_nonzero(values <= t) for t in thresholds])
    else:
        # v < t_j  <=>  j >= #(t <= v);   v <= t_j  <=>  j >= #(t < v).
        m = thresholds.size
        below = np.cumsum(np.bincount(np.searchsorted(thresholds, values, side="right"), minlength=m + 1))[:m]
        at_most = np.cumsum(np.bincount(np.searchsorted(thresholds, values, side="left"), minlength=m + 1))[:m]
    ranks = below.copy()
    # Equal distances (rare): the entry comes first when its index is lower.
    for j in np.flatnonzero(at_most - below > 1):
        tied = entries[values == thresholds[j]]
        ranks[j] += np.count_nonzero(tied < threshold_index[j])
    return ranks


def evaluate(query_features, gallery_features, q_pids, g_pids, q_camids, g_camids, metric="euclidean",
             max_rank=50, rerank=False):
    """Distances (optionally k-reciprocal re-ranked) and `evaluate_rank` in one call."""
    if rerank:
        from keras_mmga.evaluation.rerank import re_ranking

        distmat = re_ranking(query_features, gallery_features)
    else:
        distmat = compute_distance_matrix(query_features, gallery_features, metric)
    return evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank)
