import keras
import numpy as np
import pytest

from keras_mmga.layers import ChannelAttention, EmbeddingHead, MaskGuidedAttention, SpatialAttention


def _x(shape, seed=0):
    return np.random.RandomState(seed).normal(size=shape).astype("float32")


@pytest.mark.parametrize("pool, expected", [(False, (2, 8, 4, 1)), (True, (2, 4, 2, 1))])
def test_spatial_attention_shape_and_range(pool, expected):
    layer = SpatialAttention(reduction=8, pool=pool)
    s = keras.ops.convert_to_numpy(layer(_x((2, 8, 4, 128)), training=False))
    assert s.shape == expected
    assert np.all(s > 1.0) and np.all(s < 2.0)
    # Channels c -> c/8 -> c/64 -> 1.
    assert [layer.conv1.filters, layer.conv2.filters, layer.conv3.filters] == [16, 2, 1]


def test_spatial_attention_is_one_plus_sigmoid_of_last_conv():
    layer = SpatialAttention(reduction=4)
    layer.build((None, 4, 4, 16))
    kernel, bias = layer.conv3.get_weights()
    layer.conv3.set_weights([np.zeros_like(kernel), np.full_like(bias, 0.7)])
    s = keras.ops.convert_to_numpy(layer(_x((1, 4, 4, 16))))
    np.testing.assert_allclose(s, 1.0 + 1.0 / (1.0 + np.exp(-0.7)), rtol=1e-6)


def test_channel_attention_matches_numpy():
    layer = ChannelAttention(output_channels=6, reduction=2)
    x = _x((3, 5, 4, 8))
    got = keras.ops.convert_to_numpy(layer(x))
    (w1, b1), (w2, b2) = layer.squeeze.get_weights(), layer.excite.get_weights()
    pooled = x.mean(axis=(1, 2))
    expected = 1 / (1 + np.exp(-(np.maximum(pooled @ w1 + b1, 0) @ w2 + b2)))
    assert got.shape == (3, 1, 1, 6)
    np.testing.assert_allclose(got[:, 0, 0], expected, rtol=1e-5, atol=1e-6)


def test_mask_guided_attention_is_product_of_branches():
    unit = MaskGuidedAttention(output_channels=32, pool=True)
    x = _x((2, 8, 4, 16))
    a, s = unit(x, training=False)
    s_alone = unit.spatial(x, training=False)
    c_alone = unit.channel(x)
    assert tuple(a.shape) == (2, 4, 2, 32) and tuple(s.shape) == (2, 4, 2, 1)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(s_alone * c_alone), rtol=1e-6)


@pytest.mark.parametrize(
    "layer",
    [
        SpatialAttention(reduction=4, pool=True, sync_batchnorm=True),
        ChannelAttention(output_channels=12, reduction=4),
        MaskGuidedAttention(output_channels=12, spatial_reduction=2, channel_reduction=4, pool=True),
        EmbeddingHead(units=7),
    ],
)
def test_config_round_trip(layer):
    config = layer.get_config()
    clone = layer.__class__.from_config(config)
    assert clone.get_config() == config
    x = _x((2, 8, 4, 16))
    layer(x)
    clone(x)
    clone.set_weights(layer.get_weights())
    out, out_clone = layer(x, training=False), clone(x, training=False)
    if isinstance(out, tuple):
        out, out_clone = out[0], out_clone[0]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out), keras.ops.convert_to_numpy(out_clone))


def test_embedding_head_is_gap_dense_bn():
    head = EmbeddingHead(units=3)
    x = _x((4, 2, 2, 5))
    got = keras.ops.convert_to_numpy(head(x, training=False))
    (kernel,) = head.dense.get_weights()
    gamma, beta, mean, var = head.bn.get_weights()
    expected = (x.mean(axis=(1, 2)) @ kernel - mean) / np.sqrt(var + head.bn.epsilon) * gamma + beta
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="reduction"):
        SpatialAttention(reduction=0)
    with pytest.raises(ValueError, match="output_channels"):
        ChannelAttention(output_channels=0)
