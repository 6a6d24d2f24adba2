"""Channel attention of a mask-guided attention unit."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_mmga")
class ChannelAttention(keras.layers.Layer):
    """Squeeze-and-excitation style channel attention `C` of the MMGA paper.

    Global average pooling over `h × w`, a dense layer to `c_in / r` with ReLU,
    a dense layer to `output_channels` and a sigmoid. `output_channels` may
    differ from the input's channels: the attention computed on one backbone
    stage re-weights the next, wider stage.

    Args:
        output_channels: int, channels of the produced attention `c_out`.
        reduction: int, the bottleneck reduction `r` (paper: 8).
        **kwargs: standard layer arguments.

    Returns:
        `(N, 1, 1, output_channels)` weights in (0, 1).

    Example:
    ```python
    layer = ChannelAttention(output_channels=1024)
    layer(keras.ops.ones((2, 48, 16, 512))).shape
    ```

    Reference: Cai et al., "Multi-Scale Body-Part Mask Guided Attention for
    Person Re-identification", CVPR Workshops 2019, §3.1.
    """

    def __init__(self, output_channels, reduction=8, **kwargs):
        super().__init__(**kwargs)
        if int(output_channels) < 1 or int(reduction) < 1:
            raise ValueError(
                f"`output_channels` and `reduction` must be positive integers, got {output_channels} and {reduction}."
            )
        self.output_channels = int(output_channels)
        self.reduction = int(reduction)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError("ChannelAttention needs a known channel dimension.")
        self.squeeze = keras.layers.Dense(max(1, channels // self.reduction), name="squeeze", dtype=self.dtype_policy)
        self.excite = keras.layers.Dense(self.output_channels, name="excite", dtype=self.dtype_policy)
        self.squeeze.build((input_shape[0], channels))
        self.excite.build((input_shape[0], max(1, channels // self.reduction)))
        self.built = True

    def call(self, inputs):
        x = ops.mean(inputs, axis=(1, 2))
        x = ops.sigmoid(self.excite(ops.relu(self.squeeze(x))))
        return x[:, None, None, :]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1, 1, self.output_channels)

    def get_config(self):
        config = super().get_config()
        config.update(output_channels=self.output_channels, reduction=self.reduction)
        return config
