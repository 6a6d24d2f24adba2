"""Models: the ResNet50 backbone and MMGA with its ablation variants."""

from keras_mmga.models.backbone import build_resnet50_stages
from keras_mmga.models.mmga import MMGA, VARIANTS

__all__ = ["MMGA", "VARIANTS", "build_resnet50_stages"]
