"""Models: the ResNet50 stages, MMGA's feature network (`MMGABackbone`) and the MMGA task with its variants."""

from keras_mmga.models.backbone import build_resnet50_stages
from keras_mmga.models.loading import load_model
from keras_mmga.models.mmga import MMGA
from keras_mmga.models.mmga_backbone import MMGABackbone
from keras_mmga.settings import DEFAULT_PARTS, VARIANTS

__all__ = ["DEFAULT_PARTS", "MMGA", "MMGABackbone", "VARIANTS", "build_resnet50_stages", "load_model"]
