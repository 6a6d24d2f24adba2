"""The graph that is exported: a float32, strategy-free copy of the model and its traced inference call.

A model trained under mixed precision or inside a `MirroredStrategy` is
rebuilt in float32 with plain BatchNormalization (`float32_inference_copy`);
`inference_function` traces `model(images, training=False)` with one input
`images` (batch dynamic) and one output `features`. `training_function`
traces the training-mode call, every output, for comparing graphs.
"""

import keras
import numpy as np

INPUT_NAME, OUTPUT_NAME = "images", "features"


# --------------------------------------------------------------------- model
def float32_inference_copy(model):
    """A float32 copy of `model` built outside any distribution strategy.

    A model trained under mixed precision computes in float16/bfloat16, and one
    built in a `MirroredStrategy` scope holds mirrored variables (and maybe
    synchronised BatchNormalization); neither belongs in a deployable graph.
    The copy is rebuilt from `get_config()` under the float32 policy with plain
    BatchNormalization (identical weights and inference behaviour) and gets the
    source's weights as float32.

    Args:
        model: a built Keras model whose class round-trips through `get_config`.

    Returns:
        The float32 copy.

    Example:
    ```python
    copy = float32_inference_copy(mixed_model)
    copy.dtype_policy.name
    ```
    """
    import tensorflow as tf

    if tf.distribute.has_strategy() and tf.distribute.in_cross_replica_context():
        raise RuntimeError("Export outside `strategy.scope()`: a model built inside it would hold mirrored variables.")
    config = dict(model.get_config(), dtype="float32")
    if "sync_batchnorm" in config:
        config["sync_batchnorm"] = False
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")  # sub-layers built without an explicit dtype follow the global one
    try:
        clone = type(model).from_config(config)
    finally:
        keras.config.set_dtype_policy(previous)
    if not clone.built:
        clone.build((None,) + tuple(model.image_size) + (3,))
    source, target = model.weights, clone.weights
    if [tuple(w.shape) for w in source] != [tuple(w.shape) for w in target]:
        raise RuntimeError(f"Rebuilding {type(model).__name__} from its config gave different weights; cannot export.")
    clone.set_weights([np.asarray(keras.ops.convert_to_numpy(w), np.float32) for w in source])
    return clone


def inference_function(model, nchw=False, profile="default"):
    """The traced function that is exported: `images` → `{"features": ...}`.

    Args:
        model: a float32 model with `image_size`, called with `training=False`.
        nchw: take `(N, 3, H, W)` input (transposed in the graph; TensorRT and
            the ONNX optimiser fold the transpose into the first convolution).
        profile: `"default"` (RGB in [0, 255]) or `"field"` / `"boxmot"`
            (NCHW, RGB / 255 normalised by the ImageNet mean / std; see
            `keras_mmga.export.profiles`). For a field input the graph applies
            one affine map per channel composed with the model's own
            preprocessing, and the model's preprocessing is switched off while
            tracing; a preprocessing mode `profiles` does not know is handled by
            mapping back to [0, 255] and letting the model preprocess. The
            field profiles take NCHW (`profiles.layout`).

    Returns:
        A `tf.function` with one `TensorSpec` named `images`, batch dynamic.

    Example:
    ```python
    fn = inference_function(model)
    fn.input_signature[0].shape.as_list()
    ```
    """
    import tensorflow as tf

    from keras_mmga.export import profiles

    field = profiles.is_field(profile)
    nchw = profiles.layout(profile, nchw) == "NCHW"
    h, w = model.image_size
    shape = (None, 3, h, w) if nchw else (None, h, w, 3)
    backbone = getattr(model, "backbone", None)
    affine = profiles.network_affine(getattr(model, "preprocessing", "unknown")) if field else None
    if affine is not None and not hasattr(backbone, "preprocessing"):
        affine = None  # the preprocessing cannot be switched off: map back to [0, 255] instead
    if field and affine is None:
        mean = 255.0 * np.asarray(profiles.IMAGENET_MEAN)
        affine = ((0, 1, 2), 255.0 * np.asarray(profiles.IMAGENET_STD), mean)
        bypass = False
    else:
        bypass = field

    @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32, name=INPUT_NAME)])
    def features(images):
        if nchw:
            images = tf.transpose(images, (0, 2, 3, 1))
        if field:
            images = _apply_affine(tf, images, affine)
        if not bypass:
            return {OUTPUT_NAME: tf.cast(model(images, training=False), tf.float32)}
        # Tracing runs this body once: the model's own preprocessing is already
        # folded into the affine map above, so it is off for the trace only.
        saved = backbone.preprocessing
        backbone.preprocessing = None
        try:
            return {OUTPUT_NAME: tf.cast(model(images, training=False), tf.float32)}
        finally:
            backbone.preprocessing = saved

    return features


def _apply_affine(tf, images, affine):
    from keras_mmga.export import profiles

    order, scale, offset = affine
    if profiles.is_identity(affine):
        return images  # the model's preprocessing is the field's normalisation
    if tuple(order) != (0, 1, 2):
        # A gather, as the model's own RGB -> BGR: TensorRT takes it with a dynamic batch.
        images = tf.gather(images, list(order), axis=-1)
    return images * tf.constant(np.float32(scale)) + tf.constant(np.float32(offset))


def training_function(model):
    """Every output of the training-mode call, flattened: for comparing graphs.

    `model(images, training=True)` returns features, logits and attention maps;
    converted to ONNX this is the graph the inference export must be a strict
    part of (see `tests/test_export.py`).

    Example:
    ```python
    proto = convert(training_function(model))
    [o.name for o in proto.graph.output]
    ```
    """
    import tensorflow as tf

    h, w = model.image_size

    @tf.function(input_signature=[tf.TensorSpec((None, h, w, 3), tf.float32, name=INPUT_NAME)])
    def outputs(images):
        flat = {}
        for key, value in model(images, training=True).items():
            if isinstance(value, dict):
                flat.update({f"{key}/{k}": v for k, v in value.items()})
            else:
                flat[key] = value
        return flat

    return outputs
