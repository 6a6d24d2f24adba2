import numpy as np

from keras_mmga.evaluation import compute_distance_matrix, evaluate_rank
from keras_mmga.evaluation.rerank import re_ranking


def _clusters(seed, ids=8, per_id=6, noise=0.9):
    rng = np.random.RandomState(seed)
    centres = rng.normal(size=(ids, 16))
    pids = np.repeat(np.arange(ids), per_id)
    feats = centres[pids] + noise * rng.normal(size=(len(pids), 16))
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    cams = np.tile(np.arange(per_id), ids)
    q = cams == 0
    return feats[q], feats[~q], pids[q], pids[~q], cams[q], cams[~q]


def test_lambda_one_keeps_the_original_ranking():
    qf, gf, *_ = _clusters(0)
    rr = re_ranking(qf, gf, lambda_value=1.0)
    plain = compute_distance_matrix(qf, gf)
    assert rr.shape == plain.shape
    np.testing.assert_array_equal(np.argsort(rr, axis=1, kind="stable"), np.argsort(plain, axis=1, kind="stable"))


def test_jaccard_distance_is_in_unit_range_and_helps_clustered_data():
    better = 0
    for seed in range(4):
        qf, gf, qp, gp, qc, gc = _clusters(seed)
        rr = re_ranking(qf, gf, k1=6, k2=3, lambda_value=0.0)
        assert np.all(rr >= -1e-6) and np.all(rr <= 1 + 1e-6)
        before = evaluate_rank(compute_distance_matrix(qf, gf), qp, gp, qc, gc, 10)["mAP"]
        after = evaluate_rank(re_ranking(qf, gf, k1=6, k2=3), qp, gp, qc, gc, 10)["mAP"]
        better += after >= before
    assert better >= 3
