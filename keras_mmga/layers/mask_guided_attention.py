"""The mask-guided attention unit: spatial × channel attention."""

import keras

from keras_mmga.layers.channel_attention import ChannelAttention
from keras_mmga.layers.spatial_attention import SpatialAttention


@keras.saving.register_keras_serializable(package="keras_mmga")
class MaskGuidedAttention(keras.layers.Layer):
    """One attention unit of MMGA, `A = S × C`.

    The spatial map `S` is returned next to `A` because training supervises it
    with a body mask (attention RMSE, paper eq. 3–4); inference uses only `A`.

    Args:
        output_channels: int, channels `c_out` of `A` (those of the stage it
            re-weights).
        spatial_reduction: int, `s` of the spatial branch (paper: 8).
        channel_reduction: int, `r` of the channel branch (paper: 8).
        pool: bool, 2×2 average pool inside the spatial branch (module 1), so
            that `A` has half the input's resolution.
        sync_batchnorm: bool, synchronised BatchNormalization across replicas.
        **kwargs: standard layer arguments.

    Returns:
        Tuple `(attention, spatial_map)`: `(N, h', w', output_channels)` and
        `(N, h', w', 1)`.

    Example:
    ```python
    unit = MaskGuidedAttention(output_channels=1024, pool=True)
    a, s = unit(keras.ops.ones((2, 48, 16, 512)))
    a.shape, s.shape
    ```

    Reference: Cai et al., "Multi-Scale Body-Part Mask Guided Attention for
    Person Re-identification", CVPR Workshops 2019, §3.1, Figure 3.
    """

    def __init__(
        self,
        output_channels,
        spatial_reduction=8,
        channel_reduction=8,
        pool=False,
        sync_batchnorm=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.output_channels = int(output_channels)
        self.spatial_reduction = int(spatial_reduction)
        self.channel_reduction = int(channel_reduction)
        self.pool = bool(pool)
        self.sync_batchnorm = bool(sync_batchnorm)
        self.spatial = SpatialAttention(
            reduction=self.spatial_reduction,
            pool=self.pool,
            sync_batchnorm=self.sync_batchnorm,
            name="spatial",
            dtype=self.dtype_policy,
        )
        self.channel = ChannelAttention(
            output_channels=self.output_channels,
            reduction=self.channel_reduction,
            name="channel",
            dtype=self.dtype_policy,
        )

    def build(self, input_shape):
        self.spatial.build(input_shape)
        self.channel.build(input_shape)
        self.built = True

    def call(self, inputs, training=None):
        spatial_map = self.spatial(inputs, training=training)
        attention = spatial_map * self.channel(inputs)
        return attention, spatial_map

    def compute_output_shape(self, input_shape):
        map_shape = self.spatial.compute_output_shape(input_shape)
        return map_shape[:-1] + (self.output_channels,), map_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            output_channels=self.output_channels,
            spatial_reduction=self.spatial_reduction,
            channel_reduction=self.channel_reduction,
            pool=self.pool,
            sync_batchnorm=self.sync_batchnorm,
        )
        return config
