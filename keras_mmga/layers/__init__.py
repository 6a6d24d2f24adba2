"""Layers of the MMGA network."""

from keras_mmga.layers.channel_attention import ChannelAttention
from keras_mmga.layers.embedding_head import EmbeddingHead
from keras_mmga.layers.mask_guided_attention import MaskGuidedAttention
from keras_mmga.layers.spatial_attention import SpatialAttention

__all__ = ["ChannelAttention", "EmbeddingHead", "MaskGuidedAttention", "SpatialAttention"]
