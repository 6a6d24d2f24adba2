"""The paper's training settings (§4.2) as plain numbers: the one source of the recipe's defaults.

No TensorFlow or Keras: `MMGA.compile` (`keras_mmga.models.recipe`) and the
engine's `TrainConfig` (which the `keras-mmga` command reads for `--help`)
both take their defaults from here.
"""

# Exactly the recipe keywords of `MMGA.compile`.
COMPILE_DEFAULTS = dict(
    learning_rate=0.1,
    backbone_lr_scale=0.5,
    momentum=0.9,
    weight_decay=5e-4,
    lr_decay_epochs=90,
    lr_decay_rate=0.5,
    steps_per_epoch=None,
    triplet_margin=0.3,
    triplet_weight=2.0,
    attention_weight=0.1,
    part_attention_weight=0.5,
    cross_replica_triplet=True,
)

# The backbone layouts (`keras_mmga.models.backbone`) and the in-graph preprocessing their
# published ImageNet weights expect. The paper started from torchvision's ResNet50 (v1.5).
BACKBONES = ("resnet50", "resnet50_v1.5")
BACKBONE_PREPROCESSING = {"resnet50": "caffe", "resnet50_v1.5": "torch"}
