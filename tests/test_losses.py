import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from keras_mmga import losses


def _brute_force_triplet(labels, feats, margin):
    n = len(labels)
    d = np.sqrt(((feats[:, None, :] - feats[None, :, :]) ** 2).sum(-1))
    hinges = []
    for i in range(n):
        pos = [d[i, j] for j in range(n) if j != i and labels[j] == labels[i]]
        neg = [d[i, j] for j in range(n) if labels[j] != labels[i]]
        if not pos or not neg:
            continue
        hinges.append(max(0.0, max(pos) - min(neg) + margin))
    return np.mean(hinges) if hinges else 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_triplet_matches_brute_force_loop(seed):
    rng = np.random.RandomState(seed)
    labels = rng.randint(0, 5, size=20)
    labels[-1] = 99  # an anchor without a positive: left out of the mean
    feats = rng.normal(size=(20, 16)).astype("float32")
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    got = float(losses.batch_hard_triplet_loss(labels, feats, margin=0.3))
    np.testing.assert_allclose(got, _brute_force_triplet(labels, feats, 0.3), rtol=1e-5, atol=1e-6)


def test_triplet_hand_computed_example():
    labels = np.array([0, 0, 1, 1])
    feats = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8]], "float32")
    # d(a,b)=sqrt(.4), d(a,d)=sqrt(.8), d(b,d)=sqrt(.08), d(c,d)=sqrt(.4), d(b,c)=sqrt(.8)
    expected = np.mean(
        [
            np.sqrt(0.4) - np.sqrt(0.8) + 0.3,
            np.sqrt(0.4) - np.sqrt(0.08) + 0.3,
            np.sqrt(0.4) - np.sqrt(0.8) + 0.3,
            np.sqrt(0.4) - np.sqrt(0.08) + 0.3,
        ]
    )
    np.testing.assert_allclose(float(losses.batch_hard_triplet_loss(labels, feats)), expected, rtol=1e-5)


def test_triplet_all_equal_features_has_finite_gradient():
    labels = tf.constant([0, 0, 1, 1, 2, 2])
    feats = tf.Variable(np.tile([[0.6, 0.8]], (6, 1)).astype("float32"))
    with tf.GradientTape() as tape:
        loss = losses.batch_hard_triplet_loss(labels, feats, margin=0.3)
    grad = tape.gradient(loss, feats)
    # All distances are 0: every hinge is exactly the margin.
    np.testing.assert_allclose(float(loss), 0.3, atol=1e-5)
    assert np.all(np.isfinite(grad.numpy()))


def test_triplet_without_any_valid_anchor_is_zero():
    labels = np.zeros(4, "int32")  # no negatives at all
    feats = np.random.RandomState(0).normal(size=(4, 8)).astype("float32")
    assert float(losses.batch_hard_triplet_loss(labels, feats)) == 0.0


def test_triplet_terms_exclude_self_with_explicit_candidates():
    # The anchor is candidate 2 of the mined set (as under cross-replica mining).
    anchors = np.array([[1.0, 0.0]], "float32")
    cand = np.array([[-1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], "float32")
    hinge, valid = losses.batch_hard_triplet_terms(
        np.array([7]), anchors, np.array([7, 3, 7]), cand, anchor_index=np.array([2]), margin=0.3
    )
    np.testing.assert_allclose(hinge.numpy(), [2.0 - np.sqrt(2.0) + 0.3], atol=1e-6)
    assert valid.numpy().tolist() == [1.0]
    # Its only same-identity candidate is itself: no triplet.
    hinge, valid = losses.batch_hard_triplet_terms(
        np.array([7]), anchors, np.array([1, 3, 7]), cand, anchor_index=np.array([2]), margin=0.3
    )
    assert valid.numpy().tolist() == [0.0] and hinge.numpy().tolist() == [0.0]


def test_attention_rmse_hand_computed():
    # One 2x2 map per image. Image 1: map [[1,2],[3,5]] -> normalised
    # [[0,.25],[.5,1]]; mask [[0,1],[1,1]] -> squared errors 0+.5625+.25+0 = .8125.
    # Image 2: map constant -> normalised 0; mask all ones -> error 4.
    maps = np.array([[[1, 2], [3, 5]], [[2, 2], [2, 2]]], "float32")
    masks = np.array([[[0, 1], [1, 1]], [[1, 1], [1, 1]]], "float32")
    got = float(losses.attention_rmse(masks, maps))
    np.testing.assert_allclose(got, np.sqrt((0.8125 + 4.0) / 2), rtol=1e-5)
    # Weight 0 removes image 2 from both the sum and the count.
    got = float(losses.attention_rmse(masks, maps, sample_weight=np.array([1.0, 0.0])))
    np.testing.assert_allclose(got, np.sqrt(0.8125), rtol=1e-5)


def test_attention_loss_sums_eq5_with_part_weight():
    rng = np.random.RandomState(0)
    masks = rng.rand(3, 4, 2, 3).astype("float32")
    maps = {
        k: rng.rand(3, 4, 2).astype("float32")
        for k in ("module1_whole", "module2_whole", "module2_upper", "module2_bottom")
    }
    r = lambda c, k: float(losses.attention_rmse(masks[..., c], maps[k]))  # noqa: E731
    expected = (
        r(0, "module1_whole") + r(0, "module2_whole") + 0.5 * r(1, "module2_upper") + 0.5 * r(2, "module2_bottom")
    )
    np.testing.assert_allclose(float(losses.attention_loss(masks, maps)), expected, rtol=1e-5)


def test_attention_rmse_gradient_finite_at_perfect_fit():
    masks = tf.constant([[[0.0, 1.0], [0.5, 0.25]]])
    maps = tf.Variable(masks.numpy() * 3 + 1)  # min-max normalises back to the mask
    with tf.GradientTape() as tape:
        loss = losses.attention_rmse(masks, maps)
    assert float(loss) < 1e-4
    assert np.all(np.isfinite(tape.gradient(loss, maps).numpy()))


def test_softmax_and_total():
    logits = np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]], "float32")
    labels = np.array([0, 2])
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    expected = -np.mean(np.log([p[0, 0], p[1, 2]]))
    np.testing.assert_allclose(float(losses.softmax_loss(labels, logits)), expected, rtol=1e-5)
    assert float(losses.total_loss(1.0, 2.0, 0.5, 3.0)) == pytest.approx(1 + 2 + 2.0 * 0.5 + 0.1 * 3.0)
    assert (
        float(ops.convert_to_tensor(losses.total_loss(1.0, 0.0, 1.0, 1.0, triplet_weight=1.0, attention_weight=0.0)))
        == 2.0
    )


def test_flat_map_has_a_bounded_gradient():
    """A map whose values are all equal (bfloat16 maps at 2x1 often are) must not send a 1/ε gradient."""
    import tensorflow as tf

    maps = tf.Variable(np.full((2, 2, 1), 1.5, "float32"))
    masks = np.array([[[1.0], [0.0]], [[0.0], [1.0]]], "float32")
    with tf.GradientTape() as tape:
        loss = losses.attention_rmse(masks, maps)
    grad = tape.gradient(loss, maps).numpy()
    assert np.all(np.isfinite(grad)) and np.abs(grad).max() == 0.0
    np.testing.assert_allclose(losses.min_max_normalize(maps).numpy(), 0.0)
    # A map with a real range is normalised exactly as eq. 3 says.
    spread = np.array([[[1.2], [1.8]]], "float32")
    np.testing.assert_allclose(losses.min_max_normalize(spread).numpy(), [[[0.0], [1.0]]], atol=1e-6)
