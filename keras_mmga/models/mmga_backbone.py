"""MMGA's feature network: image → L2-normalised feature and spatial attention maps."""

import keras
from keras import ops

# The module, not its names (the import rule: keras_mmga.lazy).
from keras_mmga import layers
from keras_mmga.models.backbone import build_resnet50_stages, check_backbone, weights_info
from keras_mmga.settings import BACKBONE_PREPROCESSING, DEFAULT_PARTS, split_dim

# Mean pixel of the ImageNet weights Keras ships for ResNet50 ("caffe" mode:
# BGR order, mean subtraction, no scaling).
_CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
_TORCH_RGB_MEAN = (123.675, 116.28, 103.53)
_TORCH_RGB_STD = (58.395, 57.12, 57.375)
PREPROCESSING = ("caffe", "torch", None)


def check_input_shape(input_shape):
    input_shape = tuple(input_shape)
    if (
        len(input_shape) != 3
        or input_shape[2] != 3
        or any(int(d) % 16 for d in input_shape[:2])
        or min(input_shape[:2]) < 16
    ):
        raise ValueError(
            f"input_shape must be (H, W, 3) with H and W multiples of 16 (attention maps are input/16; "
            f"paper: (384, 128, 3)); got {input_shape}."
        )
    return tuple(int(d) for d in input_shape)


@keras.saving.register_keras_serializable(package="keras_mmga")
class MMGABackbone(keras.Model):
    """The feature network of MMGA: ResNet50 (last stride 1) with mask-guided attention.

    Module 1 computes a spatial × channel attention from stage 2 that
    re-weights stage 3; module 2 computes one attention per branch (the whole
    body and each part) from the re-weighted stage 3, each re-weighting stage
    4. Each weighted map is pooled and reduced (`EmbeddingHead`) to `whole_dim`
    (whole) and an equal share of `local_dim` (parts). The feature is the
    L2-normalised concatenation: what retrieval, export and deploy use. No
    classifiers and no losses: those are the task's (`keras_mmga.MMGA`).

    Called, it returns the feature `(N, feature_dim)`. `compute_outputs(images,
    training)` (not `forward`: on the PyTorch backend that is `torch.nn.Module`'s)
    returns everything the network computes: `"features"`,
    `"embeddings"` (dict branch → `(N, dim)`, unnormalised) and
    `"attention_maps"` (dict of `(N, H/16, W/16)` maps `"module1_whole"`,
    `"module2_whole"`, `"module2_<part>"`; empty without attention).

    Args:
        input_shape: `(H, W, 3)`, H and W divisible by 16 (paper: 384×128).
        backbone: `"resnet50"` (Keras's ResNet50, the Caffe-converted v1) or
            `"resnet50_v1.5"` (torchvision's / timm's layout: the paper's start).
        backbone_weights: `None` (random initialisation); for `"resnet50"`:
            `"imagenet"` or the path of Keras's
            `resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5`; for
            `"resnet50_v1.5"`: a torchvision `.pth`, a `.safetensors` file, a
            timm / Hugging Face folder or `"hf://timm/resnet50.tv_in1k"`.
        preprocessing: `"auto"` (the one the backbone's published weights
            were trained with: `"caffe"` for `"resnet50"`, `"torch"` for
            `"resnet50_v1.5"`), `"caffe"` (BGR minus the ImageNet mean),
            `"torch"` (RGB / 255, ImageNet mean / std) or `None`; in the
            graph, on RGB float pixels in [0, 255].
        backbone_weights_info: where the backbone's initial weights came from
            (`{"source", "sha256"}`); filled in when weights are loaded and
            kept in the config for the export's model card.
        attention: bool, the two attention modules (False: the plain ResNet50
            baseline, whole branch only).
        parts: tuple of part-branch names in module 2 (`()`: whole branch
            only). Each part's map is named `"module2_<part>"`.
        whole_dim: int, the whole-body feature's dimension (paper: 1024).
        local_dim: int, split equally over the parts (paper: 2 × 512).
        spatial_reduction: `s` of the spatial attention (8).
        channel_reduction: `r` of the channel attention (8).
        sync_batchnorm: synchronised BatchNormalization across
            `tf.distribute` replicas (on JAX a data-parallel step is on the
            global batch already; the flag is kept for the config).
        **kwargs: `keras.Model` arguments (`name`, `dtype`).

    Example:
    ```python
    backbone = MMGABackbone(input_shape=(128, 64, 3), backbone_weights=None)
    features = backbone(images)                    # (N, 2048), L2-normalised
    maps = backbone.attention_maps(images)["module2_upper"]  # (N, 8, 4)
    ```

    Reference: Cai, Wang, Cheng, "Multi-Scale Body-Part Mask Guided Attention
    for Person Re-identification", CVPR Workshops 2019.
    """

    def __init__(
        self,
        input_shape=(384, 128, 3),
        backbone_weights="imagenet",
        preprocessing="auto",
        attention=True,
        parts=DEFAULT_PARTS,
        whole_dim=1024,
        local_dim=1024,
        spatial_reduction=8,
        channel_reduction=8,
        sync_batchnorm=False,
        backbone="resnet50",
        backbone_weights_info=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.backbone = check_backbone(backbone)
        if preprocessing == "auto":
            preprocessing = BACKBONE_PREPROCESSING[self.backbone]
        if preprocessing not in PREPROCESSING:
            raise ValueError(f"preprocessing must be 'auto', 'caffe', 'torch' or None, got {preprocessing!r}.")
        self._image_shape = check_input_shape(input_shape)
        self.backbone_weights = backbone_weights
        self.preprocessing = preprocessing
        self.attention = bool(attention)
        self.parts = tuple(parts or ())
        self.whole_dim = int(whole_dim)
        self.local_dim = int(local_dim)
        self.spatial_reduction = int(spatial_reduction)
        self.channel_reduction = int(channel_reduction)
        self.sync_batchnorm = bool(sync_batchnorm)
        self.part_dims = split_dim(self.local_dim, len(self.parts))
        self.branches = ("whole",) + self.parts
        self.feature_dim = self.whole_dim + sum(self.part_dims)

        # Synchronised BatchNorm is tf.distribute's: Keras refuses it on JAX.
        sync_bn = self.sync_batchnorm and keras.backend.backend() == "tensorflow"
        stages = build_resnet50_stages(
            self._image_shape, backbone_weights, sync_bn, dtype=self.dtype_policy, backbone=self.backbone
        )
        self.backbone_weights_info = (
            weights_info(backbone_weights) if backbone_weights is not None else backbone_weights_info
        )
        self.stem, self.stage3, self.stage4 = stages["stem"], stages["stage3"], stages["stage4"]
        unit = dict(
            spatial_reduction=self.spatial_reduction,
            channel_reduction=self.channel_reduction,
            sync_batchnorm=sync_bn,
            dtype=self.dtype_policy,
        )
        if self.attention:
            self.module1 = layers.MaskGuidedAttention(1024, pool=True, name="module1_whole", **unit)
            self.module2 = {b: layers.MaskGuidedAttention(2048, name=f"module2_{b}", **unit) for b in self.branches}
            # Tracked as a list so variable order (and checkpoints) are stable.
            self._module2_list = [self.module2[b] for b in self.branches]
        dims = dict(zip(self.branches, [self.whole_dim] + self.part_dims))
        self.heads = {
            b: layers.EmbeddingHead(dims[b], sync_batchnorm=sync_bn, name=f"{b}_head", dtype=self.dtype_policy)
            for b in self.branches
        }
        self._head_list = [self.heads[b] for b in self.branches]
        self.build(self.input_shape)

    @property
    def input_shape(self):
        """`(None, H, W, 3)`: the batched input, as Keras models report it (the constructor takes `(H, W, 3)`)."""
        return (None,) + self._image_shape

    @property
    def backbone_name(self):
        """`"resnet50"` or `"resnet50_v1.5"` (the `backbone` argument)."""
        return self.backbone

    @property
    def image_size(self):
        """`(H, W)` of the expected images."""
        return self._image_shape[:2]

    # Its name before 0.3 (`(H, W, 3)`), kept readable.
    image_shape = property(lambda self: self._image_shape)

    @property
    def output_dtype(self):
        """float32 (float64 for a float64 model): features and maps never leave in half precision."""
        return "float64" if self.compute_dtype == "float64" else "float32"

    @property
    def attention_size(self):
        """`(h, w)` of the spatial maps and of the mask targets: input / 16."""
        return self._image_shape[0] // 16, self._image_shape[1] // 16

    @property
    def map_names(self):
        """Names of the spatial maps, in order (empty without attention)."""
        if not self.attention:
            return ()
        return ("module1_whole",) + tuple(f"module2_{b}" for b in self.branches)

    def build(self, input_shape):
        h, w = self.attention_size
        if self.attention:
            self.module1.build((None, 2 * h, 2 * w, 512))
            for unit in self._module2_list:
                unit.build((None, h, w, 1024))
        for head in self._head_list:
            head.build((None, h, w, 2048))
        self.built = True

    def preprocess(self, images):
        """RGB pixels in [0, 255] → the network's input (see `preprocessing`)."""
        images = ops.cast(images, self.compute_dtype)
        if self.preprocessing == "caffe":
            # RGB -> BGR as a gather: exports to ONNX Gather, which TensorRT
            # supports with a dynamic batch (a reversal would not be).
            bgr = ops.take(images, ops.convert_to_tensor([2, 1, 0], "int32"), axis=-1)
            return bgr - ops.convert_to_tensor(_CAFFE_BGR_MEAN, self.compute_dtype)
        if self.preprocessing == "torch":
            mean = ops.convert_to_tensor(_TORCH_RGB_MEAN, self.compute_dtype)
            std = ops.convert_to_tensor(_TORCH_RGB_STD, self.compute_dtype)
            return (images - mean) / std
        return images

    def compute_outputs(self, images, training=False):
        """Features, per-branch embeddings and attention maps of `images`."""
        x = self.preprocess(images)
        stage2 = self.stem(x, training=training)
        stage3 = self.stage3(stage2, training=training)
        maps = {}
        if self.attention:
            a1, s1 = self.module1(stage2, training=training)
            maps["module1_whole"] = s1[..., 0]
            stage3 = stage3 * a1
        stage4 = self.stage4(stage3, training=training)
        embeddings = {}
        for branch in self.branches:
            weighted = stage4
            if self.attention:
                a2, s2 = self.module2[branch](stage3, training=training)
                maps[f"module2_{branch}"] = s2[..., 0]
                weighted = stage4 * a2
            embeddings[branch] = ops.cast(self.heads[branch](weighted, training=training), self.output_dtype)
        feature = ops.concatenate([embeddings[b] for b in self.branches], axis=-1)
        return {
            "features": l2_normalize(feature),
            "embeddings": embeddings,
            "attention_maps": {k: ops.cast(v, self.output_dtype) for k, v in maps.items()},
        }

    def __call__(self, images, *args, **kwargs):
        # Before Keras's own call: a wrong image size is one error naming the expected H x W, not
        # a ResNet stem's input-spec error wrapped in "Exception encountered when calling ...".
        from keras_mmga.models import input_checks

        input_checks.check_image_shape(input_checks.static_shape(images), self._image_shape, "x")
        return super().__call__(images, *args, **kwargs)

    def call(self, images, training=False):
        return self.compute_outputs(images, training=training)["features"]

    def attention_maps(self, images):
        """Spatial attention maps in inference mode: dict of `(N, h, w)` arrays in (1, 2)."""
        return self.compute_outputs(images, training=False)["attention_maps"]

    def compute_output_spec(self, images, training=False):
        return keras.KerasTensor((images.shape[0], self.feature_dim), dtype=self.output_dtype)

    def resnet_variables(self):
        """Variables of the ResNet50 stages (the paper's lower learning-rate group)."""
        return self.stem.variables + self.stage3.variables + self.stage4.variables

    def get_config(self):
        config = super().get_config()
        config.update(
            input_shape=self._image_shape,
            backbone=self.backbone,
            backbone_weights=self.backbone_weights,
            backbone_weights_info=self.backbone_weights_info,
            preprocessing=self.preprocessing,
            attention=self.attention,
            parts=list(self.parts),
            whole_dim=self.whole_dim,
            local_dim=self.local_dim,
            spatial_reduction=self.spatial_reduction,
            channel_reduction=self.channel_reduction,
            sync_batchnorm=self.sync_batchnorm,
        )
        return config

    @classmethod
    def from_config(cls, config):
        # The saved weights replace the ImageNet ones: never download them again.
        return cls(**dict(config, backbone_weights=None))


def l2_normalize(x):
    return x / ops.sqrt(ops.maximum(ops.sum(ops.square(x), axis=-1, keepdims=True), 1e-12))
