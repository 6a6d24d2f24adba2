"""CMC, mAP and mINP under the Market-1501 protocol (as torchreid / fast-reid).

The reference implementations (torchreid `eval_market1501`, fast-reid's Cython
`eval_market1501_cy`) sort every gallery row (`np.argsort(distmat, axis=1)`),
which at Market scale (3,368 × 15,913) costs more than all the rest. Here no
row is sorted: every metric only needs the rank of each true match among the
valid gallery entries, and that rank is the number of valid entries ordered
before it. Entries farther than the query's farthest true match can never be
ordered before any match, so only the few entries up to that distance (the
"candidates") are looked at, in chunks of queries that are processed on all
cores.
"""

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

# Queries per chunk: a float32 chunk of 64 × 15,913 distances (4 MB) stays in cache.
_CHUNK_ROWS = 64


def compute_distance_matrix(query_features, gallery_features, metric="euclidean", squared=True, precision="float32"):
    """Query × gallery distances, float32.

    Args:
        query_features: (Q, D) array.
        gallery_features: (G, D) array.
        metric: `"euclidean"` or `"cosine"` (`1 − cos`, features normalised
            here first). For L2-normalised features both rank the gallery the
            same way (`‖a − b‖² = 2 − 2·cos`), which is the paper's protocol.
        squared: for `"euclidean"`, return `‖a − b‖²` (clamped at 0, as
            torchreid's `euclidean_squared_distance`); `False` takes the root
            (same ranking, more work).
        precision: `"float32"` (default; numpy/BLAS, exact to float32
            rounding) or `"bfloat16"`: the products are computed by
            TensorFlow with bfloat16 inputs and float32 accumulation, about
            twice as fast on CPUs with AVX512-BF16 / AMX, with dot-product
            errors around 1e-4 (up to 2e-3); rankings of near-equal distances
            can then differ from float32. The norms stay float32.

    Returns:
        float32 array (Q, G).

    Example:
    ```python
    q = np.eye(2, 4, dtype="float32"); g = np.eye(3, 4, dtype="float32")
    compute_distance_matrix(q, g).tolist()
    ```
    """
    q = np.asarray(query_features, np.float32)
    g = np.asarray(gallery_features, np.float32)
    if q.ndim != 2 or g.ndim != 2 or q.shape[1] != g.shape[1]:
        raise ValueError(f"Features must be (Q, D) and (G, D) with the same D; got {q.shape} and {g.shape}.")
    if metric not in ("euclidean", "cosine"):
        raise ValueError(f"metric must be 'euclidean' or 'cosine', got {metric!r}.")
    if precision not in ("float32", "bfloat16"):
        raise ValueError(f"precision must be 'float32' or 'bfloat16', got {precision!r}.")
    if metric == "cosine":
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        g = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)
    dist = _matmul_transposed(q, g, precision)  # in place from here on: one (Q, G) buffer
    if metric == "cosine":
        dist *= -1.0
        dist += 1.0
        return dist
    dist *= -2.0
    dist += np.einsum("ij,ij->i", q, q)[:, None]
    dist += np.einsum("ij,ij->i", g, g)[None, :]
    np.maximum(dist, 0.0, out=dist)  # rounding can give tiny negatives for identical vectors
    if not squared:
        np.sqrt(dist, out=dist)
    return dist


def _matmul_transposed(q, g, precision):
    if precision == "float32":
        return q @ g.T
    import tensorflow as tf  # the Keras backend; only needed for bfloat16

    # TensorFlow's CPU kernel (oneDNN) accumulates in float32 but returns bfloat16.
    product = tf.matmul(tf.cast(q, tf.bfloat16), tf.cast(g, tf.bfloat16), transpose_b=True)
    return tf.cast(product, tf.float32).numpy()


def rank_metrics(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50, num_threads=None):
    """Market-1501 single-query evaluation: CMC, mAP and mINP.

    The protocol of torchreid's and fast-reid's `eval_market1501`:

    - for each query, gallery entries with the query's identity **and**
      camera are removed (they do not count in any rank);
    - a query left with no true match is skipped (not counted as a miss);
    - the gallery is ranked by increasing distance, ties broken by gallery
      order (a stable sort);
    - CMC(k) = fraction of queries whose first true match has rank ≤ k;
    - AP is non-interpolated: the mean over true matches of the precision at
      each match's rank; mAP is its mean over queries;
    - INP = (number of true matches) / (rank of the last true match), and
      mINP its mean (Ye et al., "Deep Learning for Person Re-identification:
      A Survey and Outlook", 2021).

    Every other gallery entry is an ordinary non-match: Market distractors
    (pid 0) and, as in fast-reid, junk (pid −1) if it was not dropped at load.

    Args:
        distmat: (Q, G) distances (float32 is fastest; any real dtype is
            ranked exactly as given).
        q_pids: (Q,) integer identities of the queries.
        g_pids: (G,) integer identities of the gallery.
        q_camids: (Q,) integer cameras of the queries.
        g_camids: (G,) integer cameras of the gallery.
        max_rank: length of the CMC curve (capped at the gallery size).
        num_threads: worker threads (default: the CPU count, at most 8).

    Returns:
        Dict with `"cmc"` (float64 array of length `max_rank`, fractions),
        `"mAP"`, `"mINP"` (float fractions) and `"num_valid_queries"` (int).

    Raises:
        ValueError: mismatched lengths, a distmat that is not 2-D, NaN
            distances to true matches, or no query with a true match.

    Example:
    ```python
    r = rank_metrics(np.array([[0.2, 0.1, 0.3, 0.05]]), [1], [5, 1, 1, 1], [0], [1, 1, 2, 0], max_rank=3)
    r["cmc"].tolist(), round(r["mAP"], 4), round(r["mINP"], 4)
    ```
    """
    distmat = np.asarray(distmat)
    if distmat.ndim != 2:
        raise ValueError(f"distmat must be 2-D (num_query, num_gallery), got shape {distmat.shape}.")
    if not (np.issubdtype(distmat.dtype, np.floating) or np.issubdtype(distmat.dtype, np.integer)):
        raise ValueError(f"distmat must hold real numbers, got dtype {distmat.dtype}.")
    if distmat.dtype.itemsize < 4 or np.issubdtype(distmat.dtype, np.integer):
        # float16 and integers convert exactly to float64 (int64 up to 2**53).
        distmat = distmat.astype(np.float64)
    num_q, num_g = distmat.shape
    q_pids, q_camids = _ids(q_pids, "q_pids"), _ids(q_camids, "q_camids")
    g_pids, g_camids = _ids(g_pids, "g_pids"), _ids(g_camids, "g_camids")
    if len(q_pids) != num_q or len(q_camids) != num_q or len(g_pids) != num_g or len(g_camids) != num_g:
        raise ValueError(
            f"distmat {distmat.shape} does not match {len(q_pids)} query pids / {len(q_camids)} camids "
            f"and {len(g_pids)} gallery pids / {len(g_camids)} camids."
        )
    if max_rank < 1:
        raise ValueError(f"max_rank must be >= 1, got {max_rank}.")
    max_rank = min(int(max_rank), num_g)

    match_rows, match_cols, removed_rows, removed_cols = _same_identity_pairs(q_pids, g_pids, q_camids, g_camids)
    bounds = np.arange(0, num_q + _CHUNK_ROWS, _CHUNK_ROWS).clip(max=num_q)
    chunks = list(zip(bounds[:-1], bounds[1:]))
    m_starts = np.searchsorted(match_rows, bounds)
    r_starts = np.searchsorted(removed_rows, bounds)

    def run(c):
        (lo, hi), (m0, m1), (r0, r1) = chunks[c], m_starts[c : c + 2], r_starts[c : c + 2]
        return _chunk_ranks(
            distmat[lo:hi], match_rows[m0:m1] - lo, match_cols[m0:m1], removed_rows[r0:r1] - lo, removed_cols[r0:r1]
        )

    workers = num_threads or min(os.cpu_count() or 1, 8)
    if workers > 1 and len(chunks) > 1:
        # numpy releases the GIL in the heavy calls (compare, nonzero, sort).
        with ThreadPoolExecutor(workers) as pool:
            ranks = list(pool.map(run, range(len(chunks))))
    else:
        ranks = [run(c) for c in range(len(chunks))]
    ranks = np.concatenate(ranks)  # 0-based rank of every true match, by query then rank

    if ranks.size == 0:
        raise ValueError("No query has a true match in the gallery outside its own camera.")
    # Per valid query: its matches are a contiguous, increasing run of `ranks`.
    starts = np.flatnonzero(np.r_[True, match_rows[1:] != match_rows[:-1]])
    counts = np.diff(np.r_[starts, ranks.size])
    k = np.arange(ranks.size) - np.repeat(starts, counts)  # index of the match within its query
    ap = np.add.reduceat((k + 1) / (ranks + 1.0), starts) / counts
    inp = counts / (ranks[starts + counts - 1] + 1.0)
    first = ranks[starts]
    cmc = np.cumsum(np.bincount(first[first < max_rank], minlength=max_rank)) / len(starts)
    return {"cmc": cmc, "mAP": float(np.mean(ap)), "mINP": float(np.mean(inp)), "num_valid_queries": len(starts)}


def _check_lengths(features, pids, camids, split):
    """One pid and one camera per feature row, or an error giving the three lengths."""
    n, p, c = len(features), len(np.asarray(pids).reshape(-1)), len(np.asarray(camids).reshape(-1))
    if not n == p == c:
        raise ValueError(
            f"{split}: {n} feature rows, {p} pids and {c} camids; expected one pid and one camera "
            "per feature row, in the same order."
        )


def _ids(values, name):
    values = np.asarray(values)
    if values.ndim != 1 or not (np.issubdtype(values.dtype, np.integer) or values.size == 0):
        raise ValueError(f"{name} must be a 1-D integer array, got shape {values.shape} and dtype {values.dtype}.")
    return values.astype(np.int64)


def _same_identity_pairs(q_pids, g_pids, q_camids, g_camids):
    """(query, gallery) index pairs sharing the identity: true matches and removed entries.

    Each query's gallery entries of its identity are found by grouping the
    gallery by pid once, instead of comparing every query with the whole
    gallery. Pairs come sorted by query, then gallery index.
    """
    order = np.argsort(g_pids, kind="stable")
    sorted_pids = g_pids[order]
    first = np.searchsorted(sorted_pids, q_pids, side="left")
    sizes = np.searchsorted(sorted_pids, q_pids, side="right") - first
    rows = np.repeat(np.arange(len(q_pids)), sizes)
    offsets = np.arange(rows.size) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    cols = order[np.repeat(first, sizes) + offsets]  # ascending within each query (stable order)
    same_cam = g_camids[cols] == q_camids[rows]
    return rows[~same_cam], cols[~same_cam], rows[same_cam], cols[same_cam]


def _chunk_ranks(dist, match_rows, match_cols, removed_rows, removed_cols):
    """0-based ranks of the true matches of a chunk of queries.

    Args:
        dist: (c, G) distances of the chunk.
        match_rows, match_cols: the true matches (row in the chunk, gallery
            index), sorted by row.
        removed_rows, removed_cols: entries of the query's identity and camera.

    Returns:
        int64 ranks, ordered by row then by rank.
    """
    if match_rows.size == 0:
        return np.zeros(0, np.int64)
    c, num_g = dist.shape
    match_dist = dist[match_rows, match_cols]
    if np.isnan(match_dist).any():
        raise ValueError("distmat holds NaN distances to true matches.")
    # Farthest true match of each row (-inf where the row has none): nothing farther can rank first.
    row_starts = np.flatnonzero(np.r_[True, match_rows[1:] != match_rows[:-1]])
    limit = np.full(c, -np.inf, dist.dtype)
    limit[match_rows[row_starts]] = np.maximum.reduceat(match_dist, row_starts)
    candidates = dist <= limit[:, None]
    candidates[removed_rows, removed_cols] = False
    flat = np.flatnonzero(candidates)  # row-major: by row, then gallery index
    values = dist.reshape(-1)[flat] if dist.flags.c_contiguous else dist[flat // num_g, flat % num_g]
    bounds = np.searchsorted(flat, np.arange(c + 1) * num_g)  # each row's slice of `values`
    ranks = np.empty(match_rows.size, np.int64)
    for start, stop in zip(row_starts, np.r_[row_starts[1:], match_rows.size]):
        row = match_rows[start]
        a, b = bounds[row], bounds[row + 1]
        row_values = values[a:b]
        thresholds = match_dist[start:stop]
        # Sorting the few candidates of the row (not the row) and binary search: entries strictly closer.
        ordered = np.sort(row_values)
        below = np.searchsorted(ordered, thresholds, side="left")
        row_ranks = below
        # Equal distances: a stable sort puts the entries of lower gallery index first.
        tied = np.flatnonzero(np.searchsorted(ordered, thresholds, side="right") - below > 1)
        if tied.size:
            row_cols = flat[a:b] - row * num_g
            for j in tied:
                row_ranks[j] += np.count_nonzero((row_values == thresholds[j]) & (row_cols < match_cols[start + j]))
        row_ranks.sort()
        ranks[start:stop] = row_ranks
    return ranks


def feature_metrics(
    query_features,
    gallery_features,
    q_pids,
    g_pids,
    q_camids,
    g_camids,
    metric="euclidean",
    max_rank=50,
    rerank=False,
    precision="float32",
    return_distmat=False,
):
    """Rank metrics of query and gallery features: distances (optionally k-reciprocal re-ranked), then `rank_metrics`.

    Args:
        query_features: (Q, D) features (L2-normalised for the paper's protocol).
        gallery_features: (G, D) features.
        q_pids, g_pids, q_camids, g_camids: identities and cameras.
        metric: `"euclidean"` or `"cosine"` (see `compute_distance_matrix`).
        max_rank: length of the CMC curve.
        rerank: apply k-reciprocal re-ranking (k1=20, k2=6, λ=0.3) first.
            It starts from the `metric` / `precision` distances (as
            torchreid re-ranks its chosen metric); for L2-normalised
            features both metrics give the same re-ranked distances up to
            rounding (the re-ranking rescales each row by its maximum).
        precision: `"float32"` or `"bfloat16"` products (see
            `compute_distance_matrix`).
        return_distmat: also return the (Q, G) distance matrix.

    Returns:
        The `rank_metrics` dict, or `(dict, distmat)` with `return_distmat`.

    Example:
    ```python
    result = feature_metrics(qf, gf, q_pids, g_pids, q_camids, g_camids)
    print(f"rank-1 {result['cmc'][0]:.1%}  mAP {result['mAP']:.1%}")
    ```
    """
    _check_lengths(query_features, q_pids, q_camids, "query")
    _check_lengths(gallery_features, g_pids, g_camids, "gallery")
    if rerank:
        from keras_mmga.evaluation.rerank import re_ranking

        if metric == "euclidean" and precision == "float32":
            # re_ranking builds its one (N, N) matrix from the features itself.
            distmat = re_ranking(query_features, gallery_features)
        else:
            # The three blocks at the asked metric / precision (a second (N, N) copy while it runs).
            def dist(a, b):
                return compute_distance_matrix(a, b, metric, precision=precision)

            distmat = re_ranking(
                q_g_dist=dist(query_features, gallery_features),
                q_q_dist=dist(query_features, query_features),
                g_g_dist=dist(gallery_features, gallery_features),
            )
    else:
        distmat = compute_distance_matrix(query_features, gallery_features, metric, precision=precision)
    result = rank_metrics(distmat, q_pids, g_pids, q_camids, g_camids, max_rank)
    return (result, distmat) if return_distmat else result
