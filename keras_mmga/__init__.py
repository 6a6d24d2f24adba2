"""keras-mmga: Multi-Scale Body-Part Mask Guided Attention for person re-ID, in Keras 3."""

from keras_mmga import layers, losses, optimizers
from keras_mmga.models import MMGA, VARIANTS

__version__ = "0.1.0"

__all__ = ["MMGA", "VARIANTS", "layers", "losses", "optimizers", "__version__"]
