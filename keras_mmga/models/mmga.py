"""The MMGA re-identification model, its ablation variants and its training step."""

import warnings

import keras
import numpy as np
from keras import ops

from keras_mmga import distribute, losses
from keras_mmga.layers import EmbeddingHead, MaskGuidedAttention
from keras_mmga.models import input_checks
from keras_mmga.models.backbone import build_resnet50_stages
from keras_mmga.optimizers import EpochCounter, EpochStepDecay, ParamGroupSGD

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
    ```python
    model = MMGA(num_classes=751, backbone_weights=None, input_shape=(128, 64, 3))
    model.compile()  # the paper's recipe
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
        input_shape = tuple(input_shape)
        if len(input_shape) != 3 or input_shape[2] != 3 or any(int(d) % 16 for d in input_shape[:2]) or min(input_shape[:2]) < 16:
            raise ValueError(
                f"input_shape must be (H, W, 3) with H and W multiples of 16 (attention maps are input/16; "
                f"paper: (384, 128, 3)); got {input_shape}."
            )
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
            lr_decay_epochs: 90. lr_decay_rate: 0.5. The decay counts the
                epochs `fit` completes (an epoch counter saved with the
                optimizer), whatever their lengths, across `fit` calls,
                save / load and `BackupAndRestore` resume.
            steps_per_epoch: recorded on the schedule for reference (filled in
                by the first `fit` when omitted); the decay does not depend on
                it.
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
        self._check_loss_settings(kwargs)
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
                learning_rate=schedule,
                momentum=config["momentum"],
                weight_decay=config["weight_decay"],
                count_epochs=True,
            )
        inner = _inner_optimizer(optimizer)
        if isinstance(inner, ParamGroupSGD):
            inner.set_lr_scale(self.backbone_variables(), config["backbone_lr_scale"])
            # MMGA.fit counts the epochs it runs (EpochCounter): the decay
            # follows them, also for an optimizer restored from an older file.
            if isinstance(inner._learning_rate, EpochStepDecay):
                inner.count_epochs = True
        self._loss_config = config
        super().compile(optimizer=optimizer, **kwargs)

    def _check_loss_settings(self, kwargs):
        """Refuses loss settings that would make a term vanish, be ignored, or train towards nonsense."""
        for key in ("triplet_margin", "triplet_weight", "attention_weight", "part_attention_weight",
                    "learning_rate", "weight_decay", "lr_decay_rate"):
            if key in kwargs and not float(kwargs[key]) >= 0:
                raise ValueError(f"compile(): {key} must be ≥ 0, got {kwargs[key]}.")
        if "learning_rate" in kwargs and not float(kwargs["learning_rate"]) > 0:
            raise ValueError(f"compile(): learning_rate must be > 0, got {kwargs['learning_rate']}.")
        if "lr_decay_rate" in kwargs and not float(kwargs["lr_decay_rate"]) > 0:
            raise ValueError(f"compile(): lr_decay_rate must be > 0, got {kwargs['lr_decay_rate']}.")
        # The recipe's own values pass (the engine and saved configs carry them
        # for every variant); only a value the user changed would be ignored.
        changed = {k for k in ("attention_weight", "part_attention_weight")
                   if k in kwargs and float(kwargs[k]) != _COMPILE_DEFAULTS[k]}
        if not self.mask_supervised:
            given = sorted(changed)
            if given:
                raise ValueError(
                    f"compile(): {given} set for variant {self.variant!r}, which has no mask supervision "
                    "(no attention loss): use 'wmga', 'dmga' or 'mmga', or drop them."
                )
        elif not self.has_parts and "part_attention_weight" in changed:
            raise ValueError(
                f"compile(): part_attention_weight set for variant {self.variant!r}, which has no upper/bottom "
                "maps: use 'dmga' or 'mmga', or drop it."
            )
        if kwargs.get("triplet_weight", 1.0) == 0 and kwargs.get("triplet_margin") is not None:
            raise ValueError("compile(): triplet_margin set with triplet_weight=0: the triplet term is off.")

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

    def fit(
        self,
        x=None,
        y=None,
        batch_size=None,
        epochs=1,
        verbose="auto",
        callbacks=None,
        validation_split=0.0,
        validation_data=None,
        shuffle=None,
        class_weight=None,
        sample_weight=None,
        initial_epoch=0,
        steps_per_epoch=None,
        **kwargs,
    ):
        """`keras.Model.fit` with MMGA's checks and epoch counting.

        Differences from Keras:

        * the inputs are checked (see `keras_mmga.models.input_checks`): image
          size and channels against the model's input, labels, masks and
          sample weights, with one-line errors;
        * an `EpochCounter` callback is put first in `callbacks`: it advances
          the optimizer's epoch counter, which drives the learning-rate decay;
        * `shuffle` defaults to `True` for arrays only (a dataset or
          generator is not shuffled by Keras; the flag would only warn);
        * `sample_weight` weights every loss term per image (see
          `_compute_losses`); `class_weight` is refused.
        """
        if class_weight is not None:
            raise ValueError(
                "MMGA does not take class_weight (its targets are a dict of labels and masks, and the PK "
                "batches already balance identities): pass per-image weights as sample_weight, e.g. "
                "sample_weight=np.vectorize(class_weight.get)(labels)."
            )
        self._check_call(x, y, sample_weight, "fit")
        if isinstance(validation_data, (tuple, list)):
            self._check_call(*(tuple(validation_data) + (None,))[:3], "fit(validation_data=...)")
        self._prepare_schedule(x, batch_size, steps_per_epoch)
        if shuffle is None:
            shuffle = not _is_stream(x)
        callbacks = list(callbacks or [])
        if not any(isinstance(c, EpochCounter) for c in callbacks):
            # First: callbacks that save at the epoch end save the new count.
            callbacks.insert(0, EpochCounter())
        with _input_errors():
            return super().fit(
                x, y, batch_size=batch_size, epochs=epochs, verbose=verbose, callbacks=callbacks,
                validation_split=validation_split, validation_data=validation_data, shuffle=shuffle,
                sample_weight=sample_weight, initial_epoch=initial_epoch, steps_per_epoch=steps_per_epoch,
                **kwargs,
            )

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None, *args, **kwargs):
        """`keras.Model.evaluate` with the input checks of `fit`."""
        self._check_call(x, y, sample_weight, "evaluate")
        with _input_errors():
            return super().evaluate(x, y, batch_size, verbose, sample_weight, *args, **kwargs)

    def predict(self, x, *args, **kwargs):
        """`keras.Model.predict` with the image checks of `fit`."""
        self._check_call(x, None, None, "predict")
        with _input_errors():
            return super().predict(x, *args, **kwargs)

    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None, return_dict=False):
        if class_weight is not None:
            raise ValueError("MMGA does not take class_weight: pass per-image weights as sample_weight.")
        self._check_call(x, y, sample_weight, "train_on_batch")
        with _input_errors():
            return super().train_on_batch(x, y, sample_weight=sample_weight, return_dict=return_dict)

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        self._check_call(x, y, sample_weight, "test_on_batch")
        with _input_errors():
            return super().test_on_batch(x, y, sample_weight=sample_weight, return_dict=return_dict)

    def predict_on_batch(self, x):
        self._check_call(x, None, None, "predict_on_batch")
        with _input_errors():
            return super().predict_on_batch(x)

    def _prepare_schedule(self, x, batch_size, steps_per_epoch):
        """Checks that the learning-rate decay can count epochs of this `fit`."""
        optimizer = _inner_optimizer(getattr(self, "optimizer", None))
        schedule = getattr(optimizer, "_learning_rate", None)
        if not isinstance(schedule, EpochStepDecay):
            return
        steps = steps_per_epoch or _known_length(x, batch_size)
        if steps is None and _is_endless(x):
            raise ValueError(
                "The learning-rate decay is counted in epochs: pass steps_per_epoch to fit() "
                "(an endless dataset, e.g. the PK stream, never ends an epoch)."
            )
        counted = isinstance(optimizer, ParamGroupSGD) and optimizer._counts_epochs()
        if schedule.steps_per_epoch is None:
            if steps is None and not counted:
                raise ValueError(
                    "The learning-rate decay is counted in epochs: pass steps_per_epoch to fit() or compile()."
                )
            if steps is not None:
                # For reference (and for optimizers that count steps).
                schedule.steps_per_epoch = int(steps)
                self._loss_config["steps_per_epoch"] = int(steps)
        elif not counted and steps is not None and int(steps) != schedule.steps_per_epoch:
            raise ValueError(
                f"This optimizer ({type(optimizer).__name__}) evaluates EpochStepDecay at "
                f"iterations // {schedule.steps_per_epoch}, but this fit runs {steps} steps per epoch: the decay "
                "would not follow the epochs. Use ParamGroupSGD (compile's default), which counts epochs."
            )

    def _check_call(self, x, y, sample_weight, where):
        """Eager checks of what a training / inference method was given (see `input_checks`)."""
        if hasattr(x, "element_spec"):  # tf.data: only its spec, never its values
            spec = x.element_spec
            images = spec[0] if isinstance(spec, tuple) else spec
            input_checks.check_image_shape(input_checks.static_shape(images), self.image_shape, f"{where}: x")
            if isinstance(spec, tuple) and len(spec) > 1:
                self._check_target_structure(spec[1], where, static=True)
            return
        shape = input_checks.static_shape(x)
        if shape is None:
            return  # generators, PyDataset: checked while the step is traced
        input_checks.check_image_shape(shape, self.image_shape, f"{where}: x")
        input_checks.check_image_values(_numpy(x), f"{where}: x")
        n = shape[0]
        if y is not None:
            self._check_target_structure(y, where, static=False)
            labels = y["labels"] if isinstance(y, dict) else y
            input_checks.check_label_values(_numpy(labels), self.num_classes, f"{where}: labels")
            if _length(labels) != n:
                raise input_checks.input_error(f"{where}: x has {n} images but labels has {_length(labels)}.")
            if isinstance(y, dict) and self.mask_supervised and y.get("masks") is not None:
                input_checks.check_mask_values(_numpy(y["masks"]), self.attention_size, f"{where}: masks")
            if isinstance(y, dict) and y.get("mask_weights") is not None:
                input_checks.check_sample_weight_values(_numpy(y["mask_weights"]), n, f"{where}: mask_weights")
        if sample_weight is not None:
            input_checks.check_sample_weight_values(_numpy(sample_weight), n, f"{where}: sample_weight")
        if y is not None and where == "fit":
            labels = _numpy(y["labels"] if isinstance(y, dict) else y).reshape(-1)
            if labels.size > 1 and len(np.unique(labels)) == labels.size:
                warnings.warn(
                    "fit: every identity has one image only (K = 1): no anchor has a positive, so the "
                    "triplet term is 0 throughout. Train on PK batches (keras_mmga.data) with K ≥ 2.",
                    stacklevel=3,
                )

    def _check_target_structure(self, targets, where, static):
        if isinstance(targets, (tuple, list)):
            raise input_checks.input_error(
                f"{where}: targets must be the labels or a dict {{'labels': ..., 'masks': ...}}; got a "
                f"{type(targets).__name__} of {len(targets)}: use a dict, e.g. {{'labels': labels, 'masks': masks}}."
            )
        if isinstance(targets, dict):
            unknown = sorted(set(targets) - {"labels", "masks", "mask_weights"})
            if "labels" not in targets or unknown:
                raise input_checks.input_error(
                    f"{where}: targets must be a dict with 'labels' (and 'masks', optionally 'mask_weights'); "
                    f"got keys {sorted(targets)}."
                )
            labels = targets["labels"]
            if self.mask_supervised and targets.get("masks") is not None:
                input_checks.check_mask_shape(
                    input_checks.static_shape(targets["masks"]), self.attention_size, f"{where}: masks"
                )
        else:
            labels = targets
        input_checks.check_label_shape(input_checks.static_shape(labels), self.num_classes, f"{where}: labels")

    def _unpack(self, data):
        """`(images, labels, masks, mask_weights, sample_weight)` of a batch, shapes checked.

        Runs while the step is traced, so every check here is on static
        shapes and works on every backend.
        """
        images, targets, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        input_checks.check_image_shape(input_checks.static_shape(images), self.image_shape, "x")
        if targets is None:
            raise input_checks.input_error("training and evaluation need targets: labels or {'labels', 'masks'}.")
        self._check_target_structure(targets, "targets", static=True)
        if isinstance(targets, dict):
            labels = targets["labels"]
            masks, weights = targets.get("masks"), targets.get("mask_weights")
        else:
            labels, masks, weights = targets, None, None
        raw_labels = labels
        labels = ops.reshape(ops.cast(labels, "int32"), (-1,))
        if sample_weight is not None:
            if isinstance(sample_weight, dict):
                # Keras repeats one sample_weight for every key of a dict target.
                sample_weight = sample_weight.get("labels", next(iter(sample_weight.values())))
            if isinstance(sample_weight, (tuple, list)):
                raise input_checks.input_error("sample_weight must be one array of per-image weights (N,).")
            sample_weight = ops.reshape(ops.cast(sample_weight, self.output_dtype), (-1,))
        if self.mask_supervised:
            if masks is None:
                raise ValueError(
                    f"Variant {self.variant!r} is trained with mask supervision: the targets "
                    "need 'masks' of shape (N, h, w, 3) (whole, upper, bottom)."
                )
            input_checks.check_mask_shape(input_checks.static_shape(masks), self.attention_size, "masks")
            masks = ops.cast(masks, self.output_dtype)
            weights = ops.ones_like(labels, dtype=self.output_dtype) if weights is None else ops.cast(weights, self.output_dtype)
        else:
            masks, weights = None, None
        if keras.backend.backend() == "tensorflow":
            # Values only the step sees (datasets): checked before the losses use them.
            images, labels = input_checks.assert_batch_values(
                images, raw_labels, labels, masks, sample_weight, self.num_classes, self.image_shape
            )
        return images, labels, masks, weights, sample_weight

    def _compute_losses(self, outputs, labels, masks, weights, sample_weight=None):
        """Per-replica loss to differentiate and the global values to log.

        Every term is split so that the sum over replicas is the loss of the
        whole global batch; the logged values are that global loss.

        `sample_weight` (N,) weights each image's share of every term, as
        weighted means over the global batch: softmax `Σ w·ce / Σ w`, triplet
        `Σ w·hinge / Σ w·valid` over anchors (a weight-0 image still serves
        as a positive or negative for the others), attention per image
        together with `mask_weights` (`Σ w·m·err / Σ w·m` inside the RMSE).
        Without it every weight is 1 (exactly the unweighted loss).
        """
        cfg = self._loss_config
        replicas = distribute.num_replicas()
        if sample_weight is None:
            sample_weight = ops.ones_like(labels, dtype=self.output_dtype)
        sample_weight = ops.cast(sample_weight, self.output_dtype)
        weight_sum = distribute.all_reduce_sum(ops.sum(sample_weight))

        parts = {
            "whole_softmax": _ratio(
                ops.sum(sample_weight * losses.softmax_terms(labels, outputs["whole_logits"])), weight_sum
            )
        }
        if self.has_parts:
            parts["local_softmax"] = _ratio(
                ops.sum(sample_weight * losses.softmax_terms(labels, outputs["local_logits"])), weight_sum
            )

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
            parts["triplet"] = _ratio(
                ops.sum(sample_weight * hinge), distribute.all_reduce_sum(ops.sum(sample_weight * valid))
            )
        else:
            hinge, valid = losses.batch_hard_triplet_terms(labels, features, margin=cfg["triplet_margin"])
            parts["triplet"] = _ratio(ops.sum(sample_weight * hinge), ops.sum(sample_weight * valid)) / replicas

        total = parts["whole_softmax"] + parts.get("local_softmax", 0.0) + cfg["triplet_weight"] * parts["triplet"]
        logs = {k: distribute.all_reduce_sum(v) for k, v in parts.items()}
        if self.mask_supervised:
            weights = weights * sample_weight
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

        images, labels, masks, weights, sample_weight = self._unpack(data)
        with tf.GradientTape() as tape:
            outputs = self._forward(images, training=True)
            loss, logs = self._compute_losses(outputs, labels, masks, weights, sample_weight)
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
        images, labels, masks, weights, sample_weight = self._unpack(data)
        outputs = self._forward(images, training=False)
        _, logs = self._compute_losses(outputs, labels, masks, weights, sample_weight)
        return self._update_trackers(logs, labels, outputs)

    def predict_step(self, *args):
        """`predict_step(data)`, or `predict_step(state, data)` on JAX, after the image-size check."""
        images, _, _ = keras.utils.unpack_x_y_sample_weight(args[-1])
        input_checks.check_image_shape(input_checks.static_shape(images), self.image_shape, "x")
        if keras.backend.backend() == "tensorflow":
            input_checks.assert_image_shape(images, self.image_shape)
        return super().predict_step(*args)


def _l2_normalize(x):
    return x / ops.sqrt(ops.maximum(ops.sum(ops.square(x), axis=-1, keepdims=True), 1e-12))


def _ratio(numerator, denominator):
    """`numerator / denominator`, 0 where the denominator is 0 (then so is the numerator)."""
    return numerator / ops.where(denominator > 0, denominator, ops.ones_like(denominator))


class _input_errors:
    """Re-raises a failed input check (a graph assertion included) as one-line ValueError."""

    def __enter__(self):
        return self

    def __exit__(self, kind, err, tb):
        if err is not None and isinstance(err, Exception):
            input_checks.reraise_input_error(err)
        return False


def _is_stream(x):
    """Data Keras does not shuffle itself (datasets, generators, iterators)."""
    if x is None or hasattr(x, "shape") or isinstance(x, (list, tuple, dict)):
        return False
    if isinstance(x, keras.utils.PyDataset):
        return getattr(x, "num_batches", None) is None
    return True


def _is_endless(x):
    cardinality = getattr(x, "cardinality", None)
    if cardinality is None:
        return False
    import tensorflow as tf

    return int(cardinality()) == int(tf.data.INFINITE_CARDINALITY)


def _numpy(x):
    return keras.ops.convert_to_numpy(x)


def _length(x):
    shape = getattr(x, "shape", None)
    return int(shape[0]) if shape is not None and len(shape) else len(x)


def _known_length(x, batch_size):
    if hasattr(x, "cardinality"):
        n = int(x.cardinality())
        return n if n > 0 else None
    if hasattr(x, "__len__") and hasattr(x, "shape"):
        return -(-len(x) // (batch_size or 32))
    return None
