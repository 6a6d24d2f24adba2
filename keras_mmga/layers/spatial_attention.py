"""Spatial attention of a mask-guided attention unit."""

import keras
from keras import ops

from keras_mmga.layers.batchnorm import BN_MOMENTUM


@keras.saving.register_keras_serializable(package="keras_mmga")
class SpatialAttention(keras.layers.Layer):
    """Spatial attention map `S = 1 + sigmoid(f(X))` of the MMGA paper.

    `f` is three 1×1 convolutions `c -> c/s -> c/s² -> 1`. The paper does not
    state the activations between them; BatchNormalization + ReLU follow the
    first two (without a non-linearity the three convolutions collapse into one
    linear map). In module 1 of the network a 2×2 average pool sits after the
    first convolution so that the map matches the stage-3 resolution.

    The `1 + sigmoid` form lets attention amplify features (≥ 1 everywhere)
    instead of masking them out, so an untrained unit leaves the backbone's
    signal intact.

    Args:
        reduction: int, the channel reduction `s` between convolutions (paper: 8).
        pool: bool, whether a 2×2 average pool follows the first convolution.
        sync_batchnorm: bool, synchronise BatchNormalization statistics across
            replicas under a `tf.distribute` strategy.
        **kwargs: standard layer arguments.

    Returns:
        `(N, h, w, 1)` map with values in (1, 2); `h, w` are halved when `pool`.

    Example:
    ```python
    layer = SpatialAttention(reduction=8)
    layer(keras.ops.ones((2, 24, 8, 1024))).shape
    ```

    Reference: Cai et al., "Multi-Scale Body-Part Mask Guided Attention for
    Person Re-identification", CVPR Workshops 2019, §3.1.
    """

    def __init__(self, reduction=8, pool=False, sync_batchnorm=False, **kwargs):
        super().__init__(**kwargs)
        if int(reduction) < 1:
            raise ValueError(f"`reduction` must be a positive integer, got {reduction}.")
        self.reduction = int(reduction)
        self.pool = bool(pool)
        self.sync_batchnorm = bool(sync_batchnorm)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError("SpatialAttention needs a known channel dimension.")
        mid1 = max(1, channels // self.reduction)
        mid2 = max(1, channels // self.reduction**2)
        self.conv1 = keras.layers.Conv2D(mid1, 1, use_bias=False, name="conv1", dtype=self.dtype_policy)
        self.bn1 = keras.layers.BatchNormalization(
            momentum=BN_MOMENTUM, synchronized=self.sync_batchnorm, name="bn1", dtype=self.dtype_policy
        )
        self.conv2 = keras.layers.Conv2D(mid2, 1, use_bias=False, name="conv2", dtype=self.dtype_policy)
        self.bn2 = keras.layers.BatchNormalization(
            momentum=BN_MOMENTUM, synchronized=self.sync_batchnorm, name="bn2", dtype=self.dtype_policy
        )
        self.conv3 = keras.layers.Conv2D(1, 1, name="conv3", dtype=self.dtype_policy)
        shape = tuple(input_shape)
        self.conv1.build(shape)
        shape = shape[:-1] + (mid1,)
        self.bn1.build(shape)
        if self.pool:
            shape = (shape[0], _half(shape[1]), _half(shape[2]), mid1)
        self.conv2.build(shape)
        shape = shape[:-1] + (mid2,)
        self.bn2.build(shape)
        self.conv3.build(shape)
        self.built = True

    def call(self, inputs, training=None):
        x = ops.relu(self.bn1(self.conv1(inputs), training=training))
        if self.pool:
            x = ops.average_pool(x, pool_size=2, strides=2, padding="valid")
        x = ops.relu(self.bn2(self.conv2(x), training=training))
        return 1.0 + ops.sigmoid(self.conv3(x))

    def compute_output_shape(self, input_shape):
        n, h, w, _ = input_shape
        if self.pool:
            h, w = _half(h), _half(w)
        return (n, h, w, 1)

    def get_config(self):
        config = super().get_config()
        config.update(reduction=self.reduction, pool=self.pool, sync_batchnorm=self.sync_batchnorm)
        return config


def _half(size):
    return None if size is None else size // 2
