import numpy as np
import pytest

from keras_mmga.evaluation import compute_distance_matrix, evaluate_rank


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


@pytest.mark.parametrize("seed, integer_distances, num_matches_cap", [(0, False, 5), (1, True, 5), (2, True, 80), (3, False, 80)])
def test_matches_brute_force(seed, integer_distances, num_matches_cap):
    rng = np.random.RandomState(seed)
    num_q, num_g = 30, 300
    ids = max(2, num_g // num_matches_cap)
    q_pids, g_pids = rng.randint(0, ids, num_q), rng.randint(0, ids, num_g)
    q_camids, g_camids = rng.randint(0, 3, num_q), rng.randint(0, 3, num_g)
    # Integer distances force many ties, broken by gallery order.
    distmat = rng.randint(0, 6, (num_q, num_g)).astype("float32") if integer_distances else rng.rand(num_q, num_g)
    # A query whose only matches share its camera: skipped.
    q_pids[0], q_camids[0] = 999, 0
    g_pids[:2], g_camids[:2] = 999, 0
    got = evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=20)
    cmc, mAP, mINP, n = brute_force(distmat, q_pids, g_pids, q_camids, g_camids, 20)
    assert got["num_valid_queries"] == n < num_q
    np.testing.assert_allclose(got["cmc"], cmc, atol=1e-12)
    assert got["mAP"] == pytest.approx(mAP, abs=1e-12)
    assert got["mINP"] == pytest.approx(mINP, abs=1e-12)


def test_hand_computed_example():
    # Gallery order by distance: g1 (match), g0, g2 (match), g3 (same pid, same camera: removed).
    distmat = np.array([[0.2, 0.1, 0.3, 0.05]])
    got = evaluate_rank(distmat, [1], [5, 1, 1, 1], [0], [1, 1, 2, 0], max_rank=3)
    assert got["cmc"].tolist() == [1.0, 1.0, 1.0]
    assert got["mAP"] == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert got["mINP"] == pytest.approx(2 / 3)


def test_distractors_are_non_matches_and_errors():
    distmat = np.array([[0.1, 0.2]])
    got = evaluate_rank(distmat, [3], [0, 3], [0], [1, 1], max_rank=2)
    assert got["cmc"].tolist() == [0.0, 1.0] and got["mAP"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="does not match"):
        evaluate_rank(distmat, [3, 4], [0, 3], [0], [1, 1])
    with pytest.raises(ValueError, match="No query"):
        evaluate_rank(distmat, [3], [0, 3], [1], [1, 1])


def test_distance_matrix_metrics_agree_on_normalised_features():
    rng = np.random.RandomState(0)
    q, g = rng.normal(size=(4, 8)), rng.normal(size=(6, 8))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    euclid = compute_distance_matrix(q, g, "euclidean")
    np.testing.assert_allclose(euclid, ((q[:, None] - g[None]) ** 2).sum(-1), atol=1e-5)
    np.testing.assert_allclose(euclid, 2 * compute_distance_matrix(q, g, "cosine"), atol=1e-5)
    with pytest.raises(ValueError, match="same D"):
        compute_distance_matrix(q, g[:, :3])
