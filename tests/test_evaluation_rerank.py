import numpy as np
import pytest

from keras_mmga.evaluation import compute_distance_matrix, rank_metrics
from keras_mmga.evaluation.rerank import re_ranking


def dense_reference(qf, gf, k1, k2, lambda_value):
    """Zhong et al.'s algorithm written densely: full stable argsort, dense V and Jaccard."""
    feats = np.concatenate([qf, gf]).astype(np.float64)
    n, num_q = len(feats), len(qf)
    d = ((feats[:, None] - feats[None]) ** 2).sum(-1)
    d = d / d.max(axis=1, keepdims=True)
    rank = np.argsort(d, axis=1, kind="stable")

    def reciprocal(i, k):
        return np.array([j for j in rank[i, : k + 1] if i in rank[j, : k + 1]])

    V = np.zeros((n, n))
    for i in range(n):
        base = reciprocal(i, k1)
        expanded = set(base.tolist())
        for c in base:
            cand = reciprocal(c, int(np.around(k1 / 2)))
            if len(set(cand.tolist()) & set(base.tolist())) > 2 / 3 * len(cand):
                expanded |= set(cand.tolist())
        idx = np.array(sorted(expanded))
        V[i, idx] = np.exp(-d[i, idx]) / np.exp(-d[i, idx]).sum()
    if k2 > 1:
        V = np.array([V[rank[i, :k2]].mean(axis=0) for i in range(n)])
    jaccard = np.zeros((num_q, n))
    for i in range(num_q):
        inter = np.minimum(V[i][None], V).sum(axis=1)
        union = np.maximum(V[i][None], V).sum(axis=1)
        jaccard[i] = 1 - inter / union
    final = (1 - lambda_value) * jaccard + lambda_value * d[:num_q]
    return final[:, num_q:]


def _clusters(seed, ids=8, per_id=6, noise=0.9, dim=16):
    rng = np.random.RandomState(seed)
    centres = rng.normal(size=(ids, dim))
    pids = np.repeat(np.arange(ids), per_id)
    feats = centres[pids] + noise * rng.normal(size=(len(pids), dim))
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    cams = np.tile(np.arange(per_id), ids)
    q = cams == 0
    return feats[q].astype("float32"), feats[~q].astype("float32"), pids[q], pids[~q], cams[q], cams[~q]


@pytest.mark.parametrize("k1, k2, lambda_value", [(20, 6, 0.3), (6, 3, 0.0), (5, 1, 0.5)])
def test_matches_dense_reference(k1, k2, lambda_value):
    qf, gf, *_ = _clusters(0)
    got = re_ranking(qf, gf, k1=k1, k2=k2, lambda_value=lambda_value)
    assert got.shape == (len(qf), len(gf)) and got.dtype == np.float32
    np.testing.assert_allclose(got, dense_reference(qf, gf, k1, k2, lambda_value), atol=2e-5)


def test_distance_matrix_input_equals_feature_input():
    qf, gf, *_ = _clusters(1)
    from_feats = re_ranking(qf, gf)
    from_dists = re_ranking(
        q_g_dist=compute_distance_matrix(qf, gf),
        q_q_dist=compute_distance_matrix(qf, qf),
        g_g_dist=compute_distance_matrix(gf, gf),
    )
    np.testing.assert_allclose(from_feats, from_dists, atol=1e-5)


def test_lambda_one_gives_the_original_distances():
    qf, gf, *_ = _clusters(0)
    feats = np.concatenate([qf, gf])
    full = compute_distance_matrix(feats, feats)
    expected = full[: len(qf), len(qf) :] / full[: len(qf)].max(axis=1, keepdims=True)
    np.testing.assert_allclose(re_ranking(qf, gf, lambda_value=1.0), expected, atol=1e-6)


def test_jaccard_distance_is_in_unit_range_and_helps_clustered_data():
    better = 0
    for seed in range(4):
        qf, gf, qp, gp, qc, gc = _clusters(seed)
        rr = re_ranking(qf, gf, k1=6, k2=3, lambda_value=0.0)
        assert np.all(rr >= -1e-6) and np.all(rr <= 1 + 1e-6)
        before = rank_metrics(compute_distance_matrix(qf, gf), qp, gp, qc, gc, 10)["mAP"]
        after = rank_metrics(re_ranking(qf, gf, k1=6, k2=3), qp, gp, qc, gc, 10)["mAP"]
        better += after > before
    assert better >= 3


def test_bad_arguments():
    qf, gf, *_ = _clusters(0)
    with pytest.raises(ValueError, match="not both"):
        re_ranking(qf, gf, q_g_dist=np.zeros((len(qf), len(gf))))
    with pytest.raises(ValueError, match="all three"):
        re_ranking(q_g_dist=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="g_g_dist"):
        re_ranking(q_g_dist=np.zeros((2, 3)), q_q_dist=np.zeros((2, 2)), g_g_dist=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="k1"):
        re_ranking(qf, gf, k1=0)
