"""Global pooling + linear reduction + BatchNormalization."""

import keras
from keras import ops

from keras_mmga.layers.batchnorm import BN_MOMENTUM


@keras.saving.register_keras_serializable(package="keras_mmga")
class EmbeddingHead(keras.layers.Layer):
    """Reduces a feature map to an embedding: GAP → dense → BatchNorm.

    The paper reduces the whole / upper / bottom maps to 1024 / 512 / 512
    dimensions with "global average pooling and a linear layer" (§3.2). The
    BatchNormalization after the linear layer is the usual re-ID choice: it
    keeps the softmax and triplet losses from pulling the embedding scale in
    different directions. No ReLU follows, so the embedding keeps its sign.

    Args:
        units: int, the embedding dimension.
        sync_batchnorm: bool, synchronised BatchNormalization across replicas.
        **kwargs: standard layer arguments.

    Example:
    ```python
    head = EmbeddingHead(512)
    head(keras.ops.ones((2, 24, 8, 2048))).shape
    ```
    """

    def __init__(self, units, sync_batchnorm=False, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.sync_batchnorm = bool(sync_batchnorm)
        self.dense = keras.layers.Dense(
            self.units,
            use_bias=False,
            kernel_initializer=keras.initializers.HeNormal(seed=None),
            name="dense",
            dtype=self.dtype_policy,
        )
        self.bn = keras.layers.BatchNormalization(
            momentum=BN_MOMENTUM, synchronized=self.sync_batchnorm, name="bn", dtype=self.dtype_policy
        )

    def build(self, input_shape):
        self.dense.build((input_shape[0], input_shape[-1]))
        self.bn.build((input_shape[0], self.units))
        self.built = True

    def call(self, inputs, training=None):
        return self.bn(self.dense(ops.mean(inputs, axis=(1, 2))), training=training)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.units)

    def get_config(self):
        config = super().get_config()
        config.update(units=self.units, sync_batchnorm=self.sync_batchnorm)
        return config
