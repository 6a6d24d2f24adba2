"""The MMGA re-identification model, its ablation variants and its training step."""

import keras
from keras import ops

from keras_mmga import distribute, losses
from keras_mmga.layers import EmbeddingHead, MaskGuidedAttention
from keras_mmga.models.backbone import build_resnet50_stages
from keras_mmga.optimizers import EpochStepDecay, ParamGroupSGD

# variant -> (attention modules, part branches in module 2, supervised maps, mask mode)
VARIANTS = {
    "baseline": dict(attention=False, parts=False, supervised=False, mask_mode=None),
    "baseline_att": dict(attention=True, parts=False, supervised=False, mask_mode=None),
    "wmga": dict(attention=True, parts=False, supervised=True, mask_mode="whole"),
    "dmga": dict(attention=True, parts=True, supervised=True, mask_mode="halves"),
    "mmga": dict(attention=True, parts=True, supervised=True, mask_mode="parts"),
}

# Mean pixel of the ImageNet weights Keras ships for ResNet50 ("caffe" mode:
# BGR order, mean subtraction, no scaling).
_CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
_TORCH_RGB_MEAN = (123.675, 116.28, 103.53)
_TORCH_RGB_STD = (58.395, 57.12, 57.375)

_COMPILE_DEFAULTS = dict(
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

# compile() settings that only build the default optimizer ("sgd").
_OPTIMIZER_SETTINGS = (
    "learning_rate", "backbone_lr_scale", "momentum", "weight_decay", "lr_decay_epochs", "lr_decay_rate",
    "steps_per_epoch",
)


def _inner_optimizer(optimizer):
    """The optimizer inside a `LossScaleOptimizer` (mixed_float16), else itself."""
    return getattr(optimizer, "inner_optimizer", optimizer)


def _check_recipe_used(optimizer, kwargs):
    """Raises if `kwargs` set optimizer settings that `optimizer` would silently ignore.

    With `"sgd"` every setting builds the optimizer; a `ParamGroupSGD`
    instance takes only `backbone_lr_scale`; anything else takes none.
    """
    if isinstance(optimizer, str) and optimizer == "sgd":
        return
    usable = ("backbone_lr_scale",) if isinstance(_inner_optimizer(optimizer), ParamGroupSGD) else ()
    ignored = [k for k in _OPTIMIZER_SETTINGS if k in kwargs and k not in usable]
    if ignored:
        name = optimizer if isinstance(optimizer, str) else type(_inner_optimizer(optimizer)).__name__
        raise ValueError(
            f"compile() got {ignored} with optimizer {name!r}: these settings only build the default "
            "optimizer (optimizer='sgd'); an optimizer you pass keeps its own learning rate, momentum, "
            "weight decay and schedule. Set them on that optimizer, or drop optimizer= to use them"
            + (" (a ParamGroupSGD still takes backbone_lr_scale)." if not usable else ".")
        )


@keras.saving.register_keras_serializable(package="keras_mmga")
class MMGA(keras.Model):
    """Multi-Scale Body-Part Mask Guided Attention network for person re-ID.

    ResNet50 (last stride 1) with two mask-guided attention modules:
    module 1 computes an attention from stage 2 that re-weights stage 3; module
    2 computes whole / upper / bottom attentions from the re-weighted stage 3,
    each re-weighting stage 4. Each weighted map is pooled and reduced to 1024 /
    512 / 512 dimensions. The inference feature is their L2-normalised
    concatenation. Masks are needed only for training (they supervise the
    spatial maps); inference takes the image alone.

    Called with `training=False` (the default) the model returns the
    L2-normalised feature `(N, feature_dim)`. Called with `training=True` it
    returns a dict with `"features"`, `"whole_logits"`, `"local_logits"` (part
    variants) and `"attention_maps"` (a dict of `(N, H/16, W/16)` spatial maps:
    `"module1_whole"`, `"module2_whole"`, `"module2_upper"`,
    `"module2_bottom"`). `attention_maps(images)` returns the maps in
    inference mode, for visualisation.

    Variants (paper Table 1):

    | variant        | attention                | mask supervision        | feature |
    |----------------|--------------------------|-------------------------|---------|
    | `baseline`     | none                     | none                    | 1024    |
    | `baseline_att` | module 1 + whole branch  | none                    | 1024    |
    | `wmga`         | module 1 + whole branch  | whole                   | 1024    |
    | `dmga`         | all three branches       | whole + middle halves   | 2048    |
    | `mmga`         | all three branches       | whole + upper + bottom  | 2048    |

    Variants with only the whole branch have only the 1024-d whole feature and
    the whole classifier (paper §4.3).

    Args:
        num_classes: int, number of training identities.
        variant: one of the names above.
        input_shape: `(H, W, 3)`, H and W divisible by 16 (paper: 384×128).
        backbone_weights: `"imagenet"`, `None` or path of Keras's
            `resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5`.
        preprocessing: `"caffe"` (matches Keras's ImageNet ResNet50 weights),
            `"torch"` (ImageNet mean/std in RGB) or `None`. Applied inside the
            graph: the model takes RGB float32 pixels in [0, 255].
        whole_dim: int, dimension of the whole-body feature (paper: 1024).
        part_dim: int, dimension of each of the upper / bottom features (512).
        spatial_reduction: int, `s` of the spatial attention (8).
        channel_reduction: int, `r` of the channel attention (8).
        sync_batchnorm: bool, synchronised BatchNormalization across replicas
            (makes multi-replica training compute exactly the one-device step).
        **kwargs: standard `keras.Model` arguments (`name`, `dtype`).

    Example:
    >>> model = MMGA(num_classes=751, backbone_weights=None, input_shape=(128, 64, 3))
    >>> model.compile()
    >>> model.fit(dataset, epochs=1, steps_per_epoch=10)  # (images, {"labels", "masks"})
    >>> model(images).shape
    (N, 2048)

    Reference: Cai, Wang, Cheng, "Multi-Scale Body-Part Mask Guided Attention
    for Person Re-identification", CVPR Workshops 2019.
    """

    def __init__(
        self,
        num_classes,
        variant="mmga",
        input_shape=(384, 128, 3),
        backbone_weights="imagenet",
        preprocessing="caffe",
        whole_dim=1024,
        part_dim=512,
        spatial_reduction=8,
        channel_reduction=8,
        sync_batchnorm=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if variant not in VARIANTS:
            raise ValueError(f"Unknown variant {variant!r}; expected one of {sorted(VARIANTS)}.")
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be ≥ 1, got {num_classes}.")
        if preprocessing not in ("caffe", "torch", None):
            raise ValueError(f"preprocessing must be 'caffe', 'torch' or None, got {preprocessing!r}.")
        self.num_classes = int(num_classes)
        self.variant = variant
        self.image_shape = tuple(int(d) for d in input_shape)
        self.backbone_weights = backbone_weights
        self.preprocessing = preprocessing
        self.whole_dim = int(whole_dim)
        self.part_dim = int(part_dim)
        self.spatial_reduction = int(spatial_reduction)
        self.channel_reduction = int(channel_reduction)
        self.sync_batchnorm = bool(sync_batchnorm)
        spec = VARIANTS[variant]
        self.has_attention = spec["attention"]
        self.has_parts = spec["parts"]
        self.mask_supervised = spec["supervised"]
        self.mask_mode = spec["mask_mode"]

        # Synchronised BatchNorm is tf.distribute's: on JAX a data-parallel
        # step computes on the global batch, so its statistics are global
        # already (and Keras refuses synchronized=True there). The config keeps
        # the flag, so a model saved on either backend loads on the other.
        sync_bn = self.sync_batchnorm and keras.backend.backend() == "tensorflow"
        stages = build_resnet50_stages(self.image_shape, backbone_weights, sync_bn, dtype=self.dtype_policy)
        self.stem, self.stage3, self.stage4 = stages["stem"], stages["stage3"], stages["stage4"]

        unit = dict(
            spatial_reduction=self.spatial_reduction,
            channel_reduction=self.channel_reduction,
            sync_batchnorm=sync_bn,
            dtype=self.dtype_policy,
        )
        self.branches = ["whole", "upper", "bottom"] if self.has_parts else ["whole"]
        if self.has_attention:
            self.module1 = MaskGuidedAttention(1024, pool=True, name="module1_whole", **unit)
            self.module2 = {b: MaskGuidedAttention(2048, name=f"module2_{b}", **unit) for b in self.branches}
            # Tracked as a list so variable order (and checkpoints) are stable.
            self._module2_list = [self.module2[b] for b in self.branches]
        dims = {"whole": self.whole_dim, "upper": self.part_dim, "bottom": self.part_dim}
        self.heads = {
            b: EmbeddingHead(dims[b], sync_batchnorm=sync_bn, name=f"{b}_head", dtype=self.dtype_policy)
            for b in self.branches
        }
        self._head_list = [self.heads[b] for b in self.branches]
        classifier = dict(
            use_bias=False,
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.001),
            dtype=self.dtype_policy,
        )
        self.whole_classifier = keras.layers.Dense(self.num_classes, name="whole_classifier", **classifier)
        self.local_classifier = (
            keras.layers.Dense(self.num_classes, name="local_classifier", **classifier) if self.has_parts else None
        )
        self.feature_dim = self.whole_dim + (2 * self.part_dim if self.has_parts else 0)
        self._trackers = {name: keras.metrics.Mean(name=name) for name in self._log_names()}
        self._trackers["accuracy"] = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        self.build((None,) + self.image_shape)
        self._loss_config = dict(_COMPILE_DEFAULTS)

    # ------------------------------------------------------------------ graph
    @property
    def output_dtype(self):
        """dtype of features, logits, maps and losses: float32 (float64 for a float64 model).

        Under mixed precision the network computes in float16/bfloat16 but the
        normalisation, distances and losses stay in float32.
        """
        return "float64" if self.compute_dtype == "float64" else "float32"

    @property
    def image_size(self):
        """`(H, W)` of the expected input."""
        return self.image_shape[:2]

    @property
    def attention_size(self):
        """`(h, w)` of the spatial maps and of the mask targets: input / 16."""
        return self.image_shape[0] // 16, self.image_shape[1] // 16

    def build(self, input_shape):
        h, w = self.attention_size
        if self.has_attention:
            self.module1.build((None, 2 * h, 2 * w, 512))
            for unit in self._module2_list:
                unit.build((None, h, w, 1024))
        for head in self._head_list:
            head.build((None, h, w, 2048))
        self.whole_classifier.build((None, self.whole_dim))
        if self.local_classifier is not None:
            self.local_classifier.build((None, 2 * self.part_dim))
        self.built = True

    def _preprocess(self, images):
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

    def _forward(self, images, training=False, heads=True):
        """Everything the network computes: embeddings, maps and (optionally) logits."""
        x = self._preprocess(images)
        stage2 = self.stem(x, training=training)
        stage3 = self.stage3(stage2, training=training)
        maps = {}
        if self.has_attention:
            a1, s1 = self.module1(stage2, training=training)
            maps["module1_whole"] = s1[..., 0]
            stage3 = stage3 * a1
        stage4 = self.stage4(stage3, training=training)
        embeddings = {}
        for branch in self.branches:
            weighted = stage4
            if self.has_attention:
                a2, s2 = self.module2[branch](stage3, training=training)
                maps[f"module2_{branch}"] = s2[..., 0]
                weighted = stage4 * a2
            embeddings[branch] = ops.cast(self.heads[branch](weighted, training=training), self.output_dtype)
        feature = ops.concatenate([embeddings[b] for b in self.branches], axis=-1)
        outputs = {"features": _l2_normalize(feature)}
        if heads:
            outputs["whole_logits"] = ops.cast(self.whole_classifier(embeddings["whole"]), self.output_dtype)
            if self.has_parts:
                local = ops.concatenate([embeddings["upper"], embeddings["bottom"]], axis=-1)
                outputs["local_logits"] = ops.cast(self.local_classifier(local), self.output_dtype)
        outputs["attention_maps"] = {k: ops.cast(v, self.output_dtype) for k, v in maps.items()}
        return outputs

    def call(self, inputs, training=False):
        if training:
            return self._forward(inputs, training=True)
        return self._forward(inputs, training=False, heads=False)["features"]

    def attention_maps(self, images):
        """Spatial attention maps in inference mode: dict of `(N, h, w)` arrays in (1, 2)."""
        return self._forward(images, training=False, heads=False)["attention_maps"]

    def compute_output_spec(self, inputs, training=False):
        n = inputs.shape[0]
        spec = keras.KerasTensor((n, self.feature_dim), dtype=self.output_dtype)
        if not training:
            return spec
        return keras.backend.compute_output_spec(lambda x: self._forward(x, training=True), inputs)

    def backbone_variables(self):
        """Variables of the ResNet50 stages (the 0.05 learning-rate group)."""
        return self.stem.variables + self.stage3.variables + self.stage4.variables

    def get_config(self):
        config = super().get_config()
        config.update(
            num_classes=self.num_classes,
            variant=self.variant,
            input_shape=self.image_shape,
            backbone_weights=self.backbone_weights,
            preprocessing=self.preprocessing,
            whole_dim=self.whole_dim,
            part_dim=self.part_dim,
            spatial_reduction=self.spatial_reduction,
            channel_reduction=self.channel_reduction,
            sync_batchnorm=self.sync_batchnorm,
        )
        return config

    @classmethod
    def from_config(cls, config):
        # The saved weights replace the backbone's: never download them again.
        config = dict(config, backbone_weights=None)
        return cls(**config)

    # --------------------------------------------------------------- training
    def compile(self, optimizer="sgd", **kwargs):
        """Configures training with the paper's recipe as defaults.

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
            lr_decay_epochs: 90. lr_decay_rate: 0.5.
            steps_per_epoch: steps in one epoch, for the epoch-based decay;
                filled in by `fit` when omitted.
            triplet_margin: 0.3. triplet_weight: λ1 = 2.0.
            attention_weight: λ2 = 0.1. part_attention_weight: λ0 = 0.5.
            cross_replica_triplet: under a strategy, mine triplets over the
                global batch (all-gathered) rather than per replica.
            **kwargs: other `keras.Model.compile` arguments (`jit_compile`,
                `steps_per_execution`, ...). `loss` and `metrics` are not
                accepted: the losses are the paper's.
        """
        unknown = {k for k in kwargs if k not in _COMPILE_DEFAULTS} & {"loss", "metrics", "loss_weights"}
        if unknown:
            raise ValueError(f"MMGA computes its own losses; do not pass {sorted(unknown)} to compile().")
        _check_recipe_used(optimizer, kwargs)
        config = dict(_COMPILE_DEFAULTS)
        for key in list(kwargs):
            if key in _COMPILE_DEFAULTS:
                config[key] = kwargs.pop(key)
        if isinstance(optimizer, str) and optimizer == "sgd":
            schedule = EpochStepDecay(
                config["learning_rate"],
                decay_epochs=config["lr_decay_epochs"],
                decay_rate=config["lr_decay_rate"],
                steps_per_epoch=config["steps_per_epoch"],
            )
            optimizer = ParamGroupSGD(
                learning_rate=schedule, momentum=config["momentum"], weight_decay=config["weight_decay"]
            )
        if isinstance(_inner_optimizer(optimizer), ParamGroupSGD):
            _inner_optimizer(optimizer).set_lr_scale(self.backbone_variables(), config["backbone_lr_scale"])
        self._loss_config = config
        super().compile(optimizer=optimizer, **kwargs)

    def _log_names(self):
        names = ["loss", "whole_softmax"]
        if self.has_parts:
            names.append("local_softmax")
        names.append("triplet")
        if self.mask_supervised:
            names.append("attention")
        return names

    def get_compile_config(self):
        if not getattr(self, "compiled", False):
            return None
        config = {k: v for k, v in self._loss_config.items()}
        config["optimizer"] = keras.optimizers.serialize(self.optimizer)
        return config

    def compile_from_config(self, config):
        config = dict(config)
        optimizer = keras.optimizers.deserialize(config.pop("optimizer"))
        # The restored optimizer carries its learning rate, momentum and
        # schedule: compile() refuses them next to an instance. They stay in
        # the loss config, so that saving again records them.
        recipe = {k: config.pop(k) for k in _OPTIMIZER_SETTINGS if k in config}
        if isinstance(_inner_optimizer(optimizer), ParamGroupSGD) and "backbone_lr_scale" in recipe:
            config["backbone_lr_scale"] = recipe.pop("backbone_lr_scale")
        self.compile(optimizer=optimizer, **config)
        self._loss_config.update(recipe)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    @property
    def metrics(self):
        return list(getattr(self, "_trackers", {}).values())

    def fit(self, x=None, y=None, *args, steps_per_epoch=None, **kwargs):
        """`keras.Model.fit`; also sets the epoch length of the decay schedule."""
        optimizer = getattr(self, "optimizer", None)
        # Under mixed_float16 Keras wraps the optimizer in a LossScaleOptimizer.
        optimizer = getattr(optimizer, "inner_optimizer", optimizer)
        schedule = getattr(optimizer, "_learning_rate", None)
        if isinstance(schedule, EpochStepDecay) and schedule.steps_per_epoch is None:
            steps = steps_per_epoch or _known_length(x, kwargs.get("batch_size"))
            if steps is None:
                raise ValueError(
                    "The learning-rate decay is counted in epochs: pass steps_per_epoch "
                    "to fit() or compile() (an endless PK dataset has no length)."
                )
            schedule.steps_per_epoch = int(steps)
            self._loss_config["steps_per_epoch"] = int(steps)
        return super().fit(x, y, *args, steps_per_epoch=steps_per_epoch, **kwargs)

    def _unpack(self, data):
        images, targets = data[0], data[1]
        if isinstance(targets, dict):
            if "labels" not in targets:
                raise ValueError("Targets must be a dict with 'labels' (and 'masks' for mask-supervised variants).")
            labels = targets["labels"]
            masks, weights = targets.get("masks"), targets.get("mask_weights")
        else:
            labels, masks, weights = targets, None, None
        labels = ops.reshape(ops.cast(labels, "int32"), (-1,))
        if self.mask_supervised:
            if masks is None:
                raise ValueError(
                    f"Variant {self.variant!r} is trained with mask supervision: the targets "
                    "need 'masks' of shape (N, h, w, 3) (whole, upper, bottom)."
                )
            expected = self.attention_size
            if tuple(masks.shape[1:]) != expected + (3,):
                raise ValueError(
                    f"Masks must have shape (N, {expected[0]}, {expected[1]}, 3) (the attention-map "
                    f"size, input/16, channels whole/upper/bottom); got {tuple(masks.shape)}."
                )
            masks = ops.cast(masks, self.output_dtype)
            weights = ops.ones_like(labels, dtype=self.output_dtype) if weights is None else ops.cast(weights, self.output_dtype)
        return images, labels, masks, weights

    def _compute_losses(self, outputs, labels, masks, weights):
        """Per-replica loss to differentiate and the global values to log.

        Every term is split so that the sum over replicas is the loss of the
        whole global batch; the logged values are that global loss.
        """
        cfg = self._loss_config
        replicas = distribute.num_replicas()
        local_n = ops.cast(ops.shape(labels)[0], self.output_dtype)
        global_n = distribute.all_reduce_sum(local_n)

        parts = {"whole_softmax": ops.sum(losses.softmax_terms(labels, outputs["whole_logits"])) / global_n}
        if self.has_parts:
            parts["local_softmax"] = ops.sum(losses.softmax_terms(labels, outputs["local_logits"])) / global_n

        features = outputs["features"]
        if cfg["cross_replica_triplet"] and replicas > 1:
            local = ops.shape(labels)[0]
            offset = ops.cast(distribute.replica_id(), "int32") * local
            hinge, valid = losses.batch_hard_triplet_terms(
                labels,
                features,
                distribute.all_gather(labels),
                distribute.all_gather(features),
                anchor_index=offset + ops.arange(local, dtype="int32"),
                margin=cfg["triplet_margin"],
            )
            parts["triplet"] = ops.sum(hinge) / ops.maximum(distribute.all_reduce_sum(ops.sum(valid)), 1.0)
        else:
            hinge, valid = losses.batch_hard_triplet_terms(labels, features, margin=cfg["triplet_margin"])
            parts["triplet"] = ops.sum(hinge) / ops.maximum(ops.sum(valid), 1.0) / replicas

        total = parts["whole_softmax"] + parts.get("local_softmax", 0.0) + cfg["triplet_weight"] * parts["triplet"]
        logs = {k: distribute.all_reduce_sum(v) for k, v in parts.items()}
        if self.mask_supervised:
            count = distribute.all_reduce_sum(ops.sum(weights))
            attention = 0.0
            maps = outputs["attention_maps"]
            for name, weight in losses.attention_map_weights(maps, cfg["part_attention_weight"]):
                errors = losses.attention_squared_errors(masks[..., losses.MASK_CHANNEL[name]], maps[name])
                error_sum = distribute.all_reduce_sum(ops.sum(errors * weights))
                attention += weight * losses.rmse_from_sums(error_sum, count)
            # Every replica holds the same global RMSE; each contributes 1/R.
            total = total + cfg["attention_weight"] * attention / replicas
            logs["attention"] = attention
        logs["loss"] = distribute.all_reduce_sum(total)
        return total, logs

    def _update_trackers(self, logs, labels, outputs):
        for name in self._log_names():
            self._trackers[name].update_state(logs[name])
        self._trackers["accuracy"].update_state(labels, outputs["whole_logits"])
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, *args):
        """One step: `train_step(data)` on TensorFlow, `train_step(state, data)` on JAX."""
        if keras.backend.backend() == "jax":
            from keras_mmga import jax_backend

            return jax_backend.train_step(self, *args)
        (data,) = args
        import tensorflow as tf

        images, labels, masks, weights = self._unpack(data)
        with tf.GradientTape() as tape:
            outputs = self._forward(images, training=True)
            loss, logs = self._compute_losses(outputs, labels, masks, weights)
            scaled = self.optimizer.scale_loss(loss)
        variables = self.trainable_variables
        gradients = tape.gradient(scaled, variables)
        self.optimizer.apply(gradients, variables)
        return self._update_trackers(logs, labels, outputs)

    def test_step(self, *args):
        """Losses on one batch: `test_step(data)`, or `test_step(state, data)` on JAX."""
        if keras.backend.backend() == "jax":
            from keras_mmga import jax_backend

            return jax_backend.test_step(self, *args)
        (data,) = args
        images, labels, masks, weights = self._unpack(data)
        outputs = self._forward(images, training=False)
        _, logs = self._compute_losses(outputs, labels, masks, weights)
        return self._update_trackers(logs, labels, outputs)


def _l2_normalize(x):
    return x / ops.sqrt(ops.maximum(ops.sum(ops.square(x), axis=-1, keepdims=True), 1e-12))


def _known_length(x, batch_size):
    if hasattr(x, "cardinality"):
        n = int(x.cardinality())
        return n if n > 0 else None
    if hasattr(x, "__len__") and hasattr(x, "shape"):
        return -(-len(x) // (batch_size or 32))
    return None
