"""The MMGA re-identification task: the feature network, its classifiers, the paper's training settings and step."""

import keras
from keras import ops

# The module, not its names (the import rule: keras_mmga.lazy).
from keras_mmga import optimizers
from keras_mmga.models import batch_inputs, compile_setup
from keras_mmga.models.checked_fit import CheckedFitModel
from keras_mmga.models.mmga_backbone import MMGABackbone
from keras_mmga.models.step_losses import step_losses
from keras_mmga.settings import VARIANTS, check_variant, resolve_parts

__all__ = ["MMGA", "VARIANTS"]

# MMGABackbone settings that MMGA takes as its own arguments (`attention` and
# `parts` follow from the variant).
_BACKBONE_SETTINGS = (
    "input_shape",
    "backbone",
    "backbone_weights",
    "backbone_weights_info",
    "preprocessing",
    "whole_dim",
    "local_dim",
    "spatial_reduction",
    "channel_reduction",
    "sync_batchnorm",
)


@keras.saving.register_keras_serializable(package="keras_mmga")
class MMGA(CheckedFitModel):
    """Multi-Scale Body-Part Mask Guided Attention network for person re-ID.

    The task around `MMGABackbone` (the feature network: ResNet50 with last
    stride 1 and two mask-guided attention modules; module 2 has a whole
    branch and one branch per body part). The task adds the identity
    classifiers (whole, and local over the concatenated part features), the
    paper's losses (softmax, batch-hard triplet and the mask-guided attention
    RMSE of eq. 5, combined as eq. 9), its compile settings and a custom
    training step. Masks are needed only for training (they supervise the
    spatial maps); inference takes the image alone.

    Called with `training=False` (the default) the model returns the
    L2-normalised feature `(N, feature_dim)`. `compute_outputs(images, training)`
    returns a dict with `"features"`, `"whole_logits"`, `"local_logits"`
    (part variants) and `"attention_maps"` (dict of `(N, H/16, W/16)` maps:
    `"module1_whole"`, `"module2_whole"`, `"module2_<part>"`).
    `attention_maps(images)` returns the maps in inference mode.

    Variants (paper Table 1):

    | variant        | attention                | mask supervision        | feature |
    |----------------|--------------------------|-------------------------|---------|
    | `baseline`     | none                     | none                    | 1024    |
    | `baseline_att` | module 1 + whole branch  | none                    | 1024    |
    | `wmga`         | module 1 + whole branch  | whole                   | 1024    |
    | `dmga`         | all three branches       | whole + middle halves   | 2048    |
    | `mmga`         | whole + one per part     | whole + each part       | 2048    |

    Args:
        num_classes: int, number of training identities.
        variant: one of the names above.
        input_shape: `(H, W, 3)`, H and W divisible by 16 (paper: 384×128).
        backbone: `"resnet50"` (default; Keras's ResNet50, Caffe-converted
            v1) or `"resnet50_v1.5"` (torchvision's / timm's layout, which
            loads their ImageNet weights: the paper's start). Both with the
            last stride 1 and the attention placed alike.
        backbone_weights: `None`; for `"resnet50"` `"imagenet"` or the path
            of Keras's `resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5`;
            for `"resnet50_v1.5"` a torchvision `.pth`, a `.safetensors` file,
            a timm / Hugging Face folder or `"hf://timm/resnet50.tv_in1k"`.
        preprocessing: `"auto"` (default: what the backbone's weights expect,
            `"caffe"` for `"resnet50"`, `"torch"` for `"resnet50_v1.5"`),
            `"caffe"`, `"torch"` (RGB / 255, ImageNet mean / std) or `None`.
            Applied inside the graph: the model takes RGB float32 pixels in
            [0, 255].
        backbone_weights_info: source and sha256 of the loaded backbone
            weights (filled in by the model; kept for the model card).
        parts: mmga's part branches, names of LIP part groups
            (`keras_mmga.data.masks.PART_GROUPS`: `"head"`, `"torso"`,
            `"upper"`, `"legs"`, `"feet"`, `"bottom"`, or custom groups given to
            the data pipeline's `label_groups`). Default: the paper's
            `("upper", "bottom")`. Masks then have `1 + len(parts)` channels,
            whole first.
        whole_dim: int, dimension of the whole-body feature (paper: 1024).
        local_dim: int, split equally over the parts (paper: 1024 = 2 × 512;
            256 × 4 for four parts), so the feature stays 2048-d.
        spatial_reduction: int, `s` of the spatial attention (8).
        channel_reduction: int, `r` of the channel attention (8).
        sync_batchnorm: bool, synchronised BatchNormalization across replicas
            (makes multi-replica training compute exactly the one-device step).
        **kwargs: standard `keras.Model` arguments (`name`, `dtype`).

    Example:
    ```python
    model = MMGA(num_classes=751, backbone_weights=None, input_shape=(128, 64, 3))
    model.compile()  # the paper's settings
    # dataset yields (images, {"labels": (N,), "masks": (N, 8, 4, 3)})
    model.fit(dataset, epochs=1, steps_per_epoch=10)
    features = model(images)  # (N, 2048), L2-normalised
    ```

    Reference: Cai, Wang, Cheng, "Multi-Scale Body-Part Mask Guided Attention
    for Person Re-identification", CVPR Workshops 2019.
    """

    def __init__(
        self,
        num_classes,
        variant="mmga",
        input_shape=(384, 128, 3),
        backbone_weights="imagenet",
        preprocessing="auto",
        whole_dim=1024,
        spatial_reduction=8,
        channel_reduction=8,
        sync_batchnorm=False,
        parts=None,
        local_dim=None,
        backbone="resnet50",
        backbone_weights_info=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        spec = check_variant(variant)
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be ≥ 1, got {num_classes}.")
        self.num_classes = int(num_classes)
        self.variant = variant
        self.parts = resolve_parts(variant, parts)
        self.has_attention = spec["attention"]
        self.has_parts = bool(self.parts)
        self.mask_supervised = spec["supervised"]
        self.mask_mode = spec["mask_mode"]
        self.local_dim = 1024 if local_dim is None else int(local_dim)
        self.backbone = MMGABackbone(
            input_shape=input_shape,
            backbone=backbone,
            backbone_weights=backbone_weights,
            backbone_weights_info=backbone_weights_info,
            preprocessing=preprocessing,
            attention=self.has_attention,
            parts=self.parts,
            whole_dim=whole_dim,
            local_dim=self.local_dim,
            spatial_reduction=spatial_reduction,
            channel_reduction=channel_reduction,
            sync_batchnorm=sync_batchnorm,
            dtype=self.dtype_policy,
        )
        classifier = dict(
            use_bias=False,
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.001),
            dtype=self.dtype_policy,
        )
        self.whole_classifier = keras.layers.Dense(self.num_classes, name="whole_classifier", **classifier)
        self.local_classifier = (
            keras.layers.Dense(self.num_classes, name="local_classifier", **classifier) if self.has_parts else None
        )
        self._trackers = {name: keras.metrics.Mean(name=name) for name in self.loss_names}
        self._trackers["accuracy"] = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        self.build(self.input_shape)
        self._loss_config = dict(compile_setup.COMPILE_DEFAULTS)

    # --------------------------------------------------------- the backbone's
    input_shape = property(lambda self: self.backbone.input_shape, doc="`(None, H, W, 3)`, the batched input.")
    image_size = property(lambda self: self.backbone.image_size, doc="`(H, W)` of the expected images.")
    backbone_weights = property(lambda self: self.backbone.backbone_weights)
    backbone_weights_info = property(lambda self: self.backbone.backbone_weights_info)
    backbone_name = property(lambda self: self.backbone.backbone, doc="`resnet50` or `resnet50_v1.5`.")
    preprocessing = property(lambda self: self.backbone.preprocessing)
    whole_dim = property(lambda self: self.backbone.whole_dim)
    part_dims = property(lambda self: self.backbone.part_dims, doc="Dimension of each part feature.")
    spatial_reduction = property(lambda self: self.backbone.spatial_reduction)
    channel_reduction = property(lambda self: self.backbone.channel_reduction)
    sync_batchnorm = property(lambda self: self.backbone.sync_batchnorm)
    feature_dim = property(lambda self: self.backbone.feature_dim, doc="Dimension of the inference feature.")
    attention_size = property(lambda self: self.backbone.attention_size, doc="`(h, w)` of maps and masks.")
    output_dtype = property(lambda self: self.backbone.output_dtype, doc="dtype of features, logits and losses.")

    @property
    def part_dim(self):
        """Dimension of each part feature when the parts split `local_dim` evenly (else None)."""
        dims = set(self.part_dims)
        return dims.pop() if len(dims) == 1 else None

    @property
    def mask_channels(self):
        """Number of mask channels the model is trained with (0 without mask supervision)."""
        return len(batch_inputs.mask_channel_names(self)) if self.mask_supervised else 0

    @property
    def loss_names(self):
        """The loss terms logged by `fit` / `evaluate` (besides `accuracy`)."""
        names = ["loss", "whole_softmax"] + (["local_softmax"] if self.has_parts else []) + ["triplet"]
        return names + (["attention"] if self.mask_supervised else [])

    @property
    def loss_config(self):
        """The compile settings in use (a copy): `keras_mmga.settings.COMPILE_DEFAULTS` keys."""
        return dict(self._loss_config)

    # ------------------------------------------------------------------ graph
    def build(self, input_shape):
        self.whole_classifier.build((None, self.whole_dim))
        if self.local_classifier is not None:
            self.local_classifier.build((None, self.local_dim))
        self.built = True

    def compute_outputs(self, images, training=False, heads=True):
        """Everything the network computes: features, maps and (with `heads`) the identity logits."""
        computed = self.backbone.compute_outputs(images, training=training)
        embeddings = computed["embeddings"]
        outputs = {"features": computed["features"]}
        if heads:
            outputs["whole_logits"] = ops.cast(self.whole_classifier(embeddings["whole"]), self.output_dtype)
            if self.has_parts:
                local = ops.concatenate([embeddings[p] for p in self.parts], axis=-1)
                outputs["local_logits"] = ops.cast(self.local_classifier(local), self.output_dtype)
        outputs["attention_maps"] = computed["attention_maps"]
        return outputs

    def __call__(self, inputs, *args, **kwargs):
        # `model(x)` at the wrong size: one error naming the expected H x W (see MMGABackbone.__call__).
        from keras_mmga.models import input_checks

        input_checks.check_image_shape(input_checks.static_shape(inputs), self.input_shape[1:], "x")
        if not kwargs.get("training") and not getattr(self, "_warned_unit_range", False):
            # Concrete inputs only (model(x) on an array): symbolic ones, in a traced step, are not read.
            values = input_checks.concrete_values(inputs)
            if values is not None:
                input_checks.warn_unit_range(self, values, "model(x): x")
        return super().__call__(inputs, *args, **kwargs)

    def call(self, inputs, training=False):
        if training:
            return self.compute_outputs(inputs, training=True)
        return self.backbone(inputs, training=False)

    def attention_maps(self, images):
        """Spatial attention maps in inference mode: dict of `(N, h, w)` arrays in (1, 2)."""
        return self.backbone.attention_maps(images)

    def compute_output_spec(self, inputs, training=False):
        if not training:
            return keras.KerasTensor((inputs.shape[0], self.feature_dim), dtype=self.output_dtype)
        return keras.backend.compute_output_spec(lambda x: self.compute_outputs(x, training=True), inputs)

    def backbone_variables(self):
        """Variables of the ResNet50 stages (the paper's 0.05 learning-rate group)."""
        return self.backbone.resnet_variables()

    def get_config(self):
        # Flat, as before the backbone / task split: the backbone's own
        # settings (less what the variant decides) next to the task's.
        backbone = self.backbone.get_config()
        config = super().get_config()
        config.update({k: backbone[k] for k in _BACKBONE_SETTINGS})
        config.update(num_classes=self.num_classes, variant=self.variant, parts=list(self.parts))
        return config

    @classmethod
    def from_config(cls, config):
        # The saved weights replace the backbone's: never download them again.
        return cls(**dict(config, backbone_weights=None))

    # --------------------------------------------------------------- training
    def compile(self, optimizer="sgd", **kwargs):
        """Configures training with the paper's settings (§4.2) as defaults.

        Args:
            optimizer: `"sgd"` builds `ParamGroupSGD` with the paper's settings
                (momentum 0.9, L2 weight decay 5e-4 as PyTorch applies it,
                learning rate 0.1 for the heads and 0.05 for the backbone,
                ×0.5 every 90 epochs). A Keras optimizer instance (or another
                optimizer name) is used as given: it holds its own learning
                rate, momentum, decay and schedule, so passing any of the
                settings below from `learning_rate` to `steps_per_epoch` with
                it is a `ValueError` (they would be ignored), except
                `backbone_lr_scale` with a `ParamGroupSGD`, which applies it
                (0.5 when not passed).
            learning_rate: base (head) learning rate, 0.1.
            backbone_lr_scale: backbone learning rate / base, 0.5.
            momentum: 0.9. weight_decay: 5e-4.
            lr_decay_epochs: 90. lr_decay_rate: 0.5. The decay counts the
                epochs `fit` completes (an epoch counter saved with the
                optimizer), whatever their lengths, across `fit` calls,
                save / load and `BackupAndRestore` resume.
            steps_per_epoch: recorded on the schedule for reference (filled in
                by the first `fit` when omitted); the decay does not depend on
                it.
            triplet_margin: 0.3. triplet_weight: λ1 = 2.0.
            attention_weight: λ2 = 0.1. part_attention_weight: λ0 = 0.5, the
                weight of every part map in eq. 5.
            cross_replica_triplet: under a strategy, mine triplets over the
                global batch (all-gathered) rather than per replica.
            **kwargs: other `keras.Model.compile` arguments (`jit_compile`,
                `steps_per_execution`, ...). `loss` and `metrics` are not
                accepted: the losses are the paper's.
        """
        compile_setup.check_optimizer_settings_used(optimizer, kwargs)
        compile_setup.check_loss_settings(kwargs, self.variant, self.mask_supervised, self.has_parts)
        config, kwargs = compile_setup.split_compile_kwargs(kwargs)
        if isinstance(optimizer, str) and optimizer == "sgd":
            optimizer = compile_setup.default_optimizer(config)
        inner = compile_setup.inner_optimizer(optimizer)
        if isinstance(inner, optimizers.ParamGroupSGD):
            inner.set_lr_scale(self.backbone_variables(), config["backbone_lr_scale"])
            # MMGA.fit counts the epochs it runs (EpochCounter): the decay
            # follows them, also for an optimizer restored from an older file.
            if isinstance(inner._learning_rate, optimizers.EpochStepDecay):
                inner.count_epochs = True
        self._loss_config = config
        super().compile(optimizer=optimizer, **kwargs)

    def get_compile_config(self):
        if not getattr(self, "compiled", False):
            return None
        return dict(self._loss_config, optimizer=keras.optimizers.serialize(self.optimizer))

    def compile_from_config(self, config):
        config = dict(config)
        optimizer = keras.optimizers.deserialize(config.pop("optimizer"))
        # The restored optimizer carries its learning rate, momentum and
        # schedule: compile() refuses them next to an instance. They stay in
        # the loss config, so that saving again records them.
        settings = {k: config.pop(k) for k in compile_setup.OPTIMIZER_SETTINGS if k in config}
        if (
            isinstance(compile_setup.inner_optimizer(optimizer), optimizers.ParamGroupSGD)
            and "backbone_lr_scale" in settings
        ):
            config["backbone_lr_scale"] = settings.pop("backbone_lr_scale")
        self.compile(optimizer=optimizer, **config)
        self._loss_config.update(settings)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    @property
    def metrics(self):
        return list(getattr(self, "_trackers", {}).values())

    def unpack_batch(self, data):
        """`(images, labels, masks, mask_weights, sample_weight)` of a training batch, shapes checked."""
        return batch_inputs.unpack_batch(self, data)

    def compute_losses(self, outputs, labels, masks=None, mask_weights=None, sample_weight=None):
        """`(loss, logs)` of one step on `outputs` of `compute_outputs(..., training=True)` (see `step_losses`)."""
        if self.mask_supervised and mask_weights is None:
            mask_weights = ops.ones_like(labels, dtype=self.output_dtype)
        return step_losses(
            outputs,
            labels,
            masks,
            mask_weights,
            sample_weight,
            self._loss_config,
            self.output_dtype,
            self.mask_supervised,
            self.parts,
        )

    def update_trackers(self, logs, labels, outputs):
        """Updates the logged means and the accuracy; returns the current logs."""
        for name in self.loss_names:
            self._trackers[name].update_state(logs[name])
        self._trackers["accuracy"].update_state(labels, outputs["whole_logits"])
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, *args):
        """One step: `train_step(data)` on TensorFlow and PyTorch, `train_step(state, data)` on JAX."""
        return _backend_steps().train_step(self, *args)

    def test_step(self, *args):
        """Losses on one batch: `test_step(data)`, or `test_step(state, data)` on JAX."""
        return _backend_steps().test_step(self, *args)

    def predict_step(self, *args):
        """`predict_step(data)`, or `predict_step(state, data)` on JAX, after the image-size check."""
        from keras_mmga.models import input_checks

        images, _, _ = keras.utils.unpack_x_y_sample_weight(args[-1])
        input_checks.check_image_shape(input_checks.static_shape(images), self.input_shape[1:], "x")
        if keras.backend.backend() == "tensorflow":
            input_checks.assert_image_shape(images, self.input_shape[1:])
        return super().predict_step(*args)


def _backend_steps():
    """The module with the current backend's `train_step` / `test_step` (imported only for that backend)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        from keras_mmga.backends import tensorflow as steps
    elif backend == "jax":
        from keras_mmga.backends import jax as steps
    elif backend == "torch":
        from keras_mmga.backends import torch as steps
    else:
        raise NotImplementedError(
            f"MMGA trains on the TensorFlow, JAX or PyTorch backend; Keras runs on {backend!r} (set KERAS_BACKEND)."
        )
    return steps
