import numpy as np
import pytest

from keras_mmga.evaluation import compute_distance_matrix, feature_metrics, rank_metrics


def brute_force(distmat, q_pids, g_pids, q_camids, g_camids, max_rank):
    """Per-query loop with an explicit stable sort (the torchreid reference logic)."""
    cmc_sum, aps, inps = np.zeros(max_rank), [], []
    for i in range(len(q_pids)):
        order = np.argsort(distmat[i], kind="stable")
        keep = ~((g_pids[order] == q_pids[i]) & (g_camids[order] == q_camids[i]))
        hits = (g_pids[order] == q_pids[i])[keep].astype(int)
        if not hits.any():
            continue
        first = np.argmax(hits)
        cmc = np.zeros(max_rank)
        if first < max_rank:
            cmc[first:] = 1
        cmc_sum += cmc
        precisions = [hits[: k + 1].sum() / (k + 1) for k in range(len(hits)) if hits[k]]
        aps.append(np.mean(precisions))
        last = np.flatnonzero(hits)[-1]
        inps.append(hits.sum() / (last + 1))
    return cmc_sum / len(aps), np.mean(aps), np.mean(inps), len(aps)


def _problem(seed, num_q, num_g, num_ids, num_cams, dtype, integer_distances):
    rng = np.random.RandomState(seed)
    q_pids, g_pids = rng.randint(0, num_ids, num_q), rng.randint(-1, num_ids, num_g)  # -1: junk left in
    q_camids, g_camids = rng.randint(0, num_cams, num_q), rng.randint(0, num_cams, num_g)
    if integer_distances:  # many ties, broken by gallery order
        distmat = rng.randint(0, 6, (num_q, num_g)).astype(dtype)
    else:
        distmat = rng.rand(num_q, num_g).astype(dtype)
    # A query whose only matches share its camera: skipped.
    q_pids[0], q_camids[0] = 999, 0
    g_pids[:2], g_camids[:2] = 999, 0
    return distmat, q_pids, g_pids, q_camids, g_camids


@pytest.mark.parametrize(
    "seed, num_q, num_g, num_ids, integer_distances, dtype",
    [
        (0, 30, 300, 60, False, "float64"),
        (1, 30, 300, 60, True, "float32"),
        (2, 30, 300, 4, True, "float64"),  # ~75 matches a query
        (3, 30, 300, 4, False, "float32"),
        (4, 150, 400, 30, False, "float32"),  # several chunks of queries, threads
        (5, 150, 400, 30, True, "int64"),
        (6, 40, 200, 10, True, "float16"),
    ],
)
def test_matches_brute_force(seed, num_q, num_g, num_ids, integer_distances, dtype):
    distmat, q_pids, g_pids, q_camids, g_camids = _problem(seed, num_q, num_g, num_ids, 3, dtype, integer_distances)
    got = rank_metrics(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=20)
    cmc, mAP, mINP, n = brute_force(distmat, q_pids, g_pids, q_camids, g_camids, 20)
    assert got["num_valid_queries"] == n < num_q
    assert got["cmc"].shape == (20,)
    np.testing.assert_allclose(got["cmc"], cmc, atol=1e-12)
    assert got["mAP"] == pytest.approx(mAP, abs=1e-12)
    assert got["mINP"] == pytest.approx(mINP, abs=1e-12)
    # Same answer single-threaded and on a non-contiguous (Fortran-order) matrix.
    single = rank_metrics(np.asfortranarray(distmat), q_pids, g_pids, q_camids, g_camids, 20, num_threads=1)
    np.testing.assert_array_equal(single["cmc"], got["cmc"])
    assert single["mAP"] == got["mAP"] and single["mINP"] == got["mINP"]


def test_hand_computed_example():
    # By distance: g3 (same pid and camera: removed), g1 (match), g0, g2 (match): matches at ranks 1 and 3.
    distmat = np.array([[0.2, 0.1, 0.3, 0.05]])
    got = rank_metrics(distmat, [1], [5, 1, 1, 1], [0], [1, 1, 2, 0], max_rank=3)
    assert got["cmc"].tolist() == [1.0, 1.0, 1.0]
    assert got["mAP"] == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert got["mINP"] == pytest.approx(2 / 3)
    assert got["num_valid_queries"] == 1


def test_ties_follow_gallery_order():
    # All at the same distance: the match at index 2 ranks third (after g0 and g1).
    got = rank_metrics(np.zeros((1, 4), "float32"), [7], [1, 2, 7, 3], [0], [1, 1, 1, 1], max_rank=4)
    assert got["cmc"].tolist() == [0.0, 0.0, 1.0, 1.0]
    assert got["mAP"] == pytest.approx(1 / 3) and got["mINP"] == pytest.approx(1 / 3)


def test_two_queries_average_and_max_rank_capped():
    # q0: match first; q1: match second. CMC capped at the gallery size (3).
    distmat = np.array([[0.1, 0.5, 0.9], [0.1, 0.2, 0.9]], "float32")
    got = rank_metrics(distmat, [1, 2], [1, 2, 3], [0, 0], [1, 1, 1], max_rank=50)
    assert got["cmc"].tolist() == [0.5, 1.0, 1.0]
    assert got["mAP"] == pytest.approx((1 + 0.5) / 2) and got["mINP"] == pytest.approx((1 + 0.5) / 2)


def test_distractors_are_non_matches_and_errors():
    distmat = np.array([[0.1, 0.2]])
    got = rank_metrics(distmat, [3], [0, 3], [0], [1, 1], max_rank=2)
    assert got["cmc"].tolist() == [0.0, 1.0] and got["mAP"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="does not match"):
        rank_metrics(distmat, [3, 4], [0, 3], [0], [1, 1])
    with pytest.raises(ValueError, match="No query"):
        rank_metrics(distmat, [3], [0, 3], [1], [1, 1])
    with pytest.raises(ValueError, match="2-D"):
        rank_metrics(distmat[0], [3], [0, 3], [0], [1, 1])
    with pytest.raises(ValueError, match="integer"):
        rank_metrics(distmat, [3.5], [0, 3], [0], [1, 1])
    with pytest.raises(ValueError, match="NaN"):
        rank_metrics(np.array([[0.1, np.nan]]), [3], [0, 3], [0], [1, 1])


def test_distance_matrix_metrics_agree_on_normalised_features():
    rng = np.random.RandomState(0)
    q, g = rng.normal(size=(4, 8)), rng.normal(size=(6, 8))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    euclid = compute_distance_matrix(q, g, "euclidean")
    assert euclid.dtype == np.float32
    np.testing.assert_allclose(euclid, ((q[:, None] - g[None]) ** 2).sum(-1), atol=1e-5)
    np.testing.assert_allclose(compute_distance_matrix(q, g, squared=False), np.sqrt(euclid), atol=1e-5)
    np.testing.assert_allclose(euclid, 2 * compute_distance_matrix(q, g, "cosine"), atol=1e-5)
    np.testing.assert_allclose(compute_distance_matrix(q, g, precision="bfloat16"), euclid, atol=2e-2)
    with pytest.raises(ValueError, match="same D"):
        compute_distance_matrix(q, g[:, :3])
    with pytest.raises(ValueError, match="metric"):
        compute_distance_matrix(q, g, "manhattan")


def test_evaluate_from_features():
    rng = np.random.RandomState(0)
    centres = rng.normal(size=(5, 16))
    g_pids, q_pids = np.repeat(np.arange(5), 4), np.arange(5)
    gf = centres[g_pids] + 0.1 * rng.normal(size=(20, 16))
    qf = centres[q_pids] + 0.1 * rng.normal(size=(5, 16))
    result, distmat = feature_metrics(qf, gf, q_pids, g_pids, np.zeros(5, int), np.ones(20, int), return_distmat=True)
    assert distmat.shape == (5, 20)
    assert result["cmc"][0] == 1.0 and result["mAP"] == pytest.approx(1.0)


def test_rerank_starts_from_the_asked_metric_and_precision():
    from keras_mmga.evaluation.rerank import re_ranking

    rng = np.random.RandomState(1)
    centres = rng.normal(size=(4, 8))
    g_pids, q_pids = np.repeat(np.arange(4), 3), np.arange(4)
    # Unnormalised features with very different norms: cosine and Euclidean distances disagree.
    gf = (centres[g_pids] + 0.3 * rng.normal(size=(12, 8))) * rng.uniform(0.2, 5.0, (12, 1))
    qf = (centres[q_pids] + 0.3 * rng.normal(size=(4, 8))) * rng.uniform(0.2, 5.0, (4, 1))
    cams = (np.zeros(4, int), np.ones(12, int))

    def reranked(q, g, **kw):
        return feature_metrics(q, g, q_pids, g_pids, *cams, rerank=True, return_distmat=True, **kw)[1]

    euclid = reranked(qf, gf)
    np.testing.assert_allclose(euclid, re_ranking(qf, gf), atol=1e-6)  # the default path is unchanged
    cosine = reranked(qf, gf, metric="cosine")
    expected = re_ranking(
        q_g_dist=compute_distance_matrix(qf, gf, "cosine"),
        q_q_dist=compute_distance_matrix(qf, qf, "cosine"),
        g_g_dist=compute_distance_matrix(gf, gf, "cosine"),
    )
    np.testing.assert_allclose(cosine, expected, atol=1e-6)
    assert np.abs(cosine - euclid).max() > 1e-2  # the metric is not ignored
    # On L2-normalised features the two metrics re-rank the same (rows are rescaled by their maximum).
    qn, gn = (f / np.linalg.norm(f, axis=1, keepdims=True) for f in (qf, gf))
    np.testing.assert_allclose(reranked(qn, gn, metric="cosine"), reranked(qn, gn), atol=1e-5)
    np.testing.assert_allclose(reranked(qn, gn, precision="bfloat16"), reranked(qn, gn), atol=2e-2)
    with pytest.raises(ValueError, match="metric"):
        reranked(qf, gf, metric="manhattan")
    with pytest.raises(ValueError, match="precision"):
        reranked(qf, gf, precision="float16")


def test_evaluate_names_a_features_ids_length_mismatch():
    from keras_mmga.evaluation import feature_metrics

    qf, gf = np.eye(2, 4, dtype="float32"), np.eye(3, 4, dtype="float32")
    with pytest.raises(ValueError, match="gallery: 3 feature rows, 2 pids and 3 camids"):
        feature_metrics(qf, gf, [1, 2], [1, 2], [0, 0], [1, 1, 1])
    with pytest.raises(ValueError, match="query: 2 feature rows, 2 pids and 1 camids"):
        feature_metrics(qf, gf, [1, 2], [1, 2, 3], [0], [1, 1, 1], rerank=True)
