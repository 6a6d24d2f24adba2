"""ResNet50 with the last spatial down-sampling removed, split at MMGA's taps.

MMGA re-weights stage 3 with an attention computed from stage 2, and feeds the
re-weighted stage 3 (not the raw one) into stage 4. The backbone is therefore
built as three functional models chained by the caller:

* `stem`: image → `conv3_block4_out` (stage 2, stride 8, 512 channels);
* `stage3`: → `conv4_block6_out` (stride 16, 1024 channels);
* `stage4`: → `conv5_block3_out` (stride 16: its first block has stride 1,
  the "last stride 1" trick; 2048 channels).

Layer names and topology are those of `keras.applications.ResNet50`, so
ImageNet weights copy over layer by layer.
"""

import os

import keras

from keras_mmga.layers.batchnorm import BN_MOMENTUM

# keras.applications.ResNet50 stacks: (name, filters, blocks, first stride).
_STAGES = {
    "stem": [("conv2", 64, 3, 1), ("conv3", 128, 4, 2)],
    "stage3": [("conv4", 256, 6, 2)],
    "stage4": [("conv5", 512, 3, 1)],  # stride 2 in ResNet50; removed here
}
_BN_EPSILON = 1.001e-5
WEIGHTS_FILE = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"


def _block(x, filters, stride, conv_shortcut, name, sync_bn, dtype):
    bn = lambda n: keras.layers.BatchNormalization(  # noqa: E731
        momentum=BN_MOMENTUM,
        axis=-1, epsilon=_BN_EPSILON, synchronized=sync_bn, name=n, dtype=dtype
    )
    conv = lambda f, k, n, **kw: keras.layers.Conv2D(f, k, name=n, dtype=dtype, **kw)  # noqa: E731
    relu = lambda n: keras.layers.Activation("relu", name=n, dtype=dtype)  # noqa: E731
    if conv_shortcut:
        shortcut = bn(name + "_0_bn")(conv(4 * filters, 1, name + "_0_conv", strides=stride)(x))
    else:
        shortcut = x
    x = relu(name + "_1_relu")(bn(name + "_1_bn")(conv(filters, 1, name + "_1_conv", strides=stride)(x)))
    x = relu(name + "_2_relu")(bn(name + "_2_bn")(conv(filters, 3, name + "_2_conv", padding="same")(x)))
    x = bn(name + "_3_bn")(conv(4 * filters, 1, name + "_3_conv")(x))
    x = keras.layers.Add(name=name + "_add", dtype=dtype)([shortcut, x])
    return relu(name + "_out")(x)


def _stacks(x, stage, sync_bn, dtype):
    for stack, filters, blocks, stride in _STAGES[stage]:
        x = _block(x, filters, stride, True, f"{stack}_block1", sync_bn, dtype)
        for i in range(2, blocks + 1):
            x = _block(x, filters, 1, False, f"{stack}_block{i}", sync_bn, dtype)
    return x


def build_resnet50_stages(input_shape=(384, 128, 3), weights="imagenet", sync_batchnorm=False, dtype=None):
    """Builds the three ResNet50 (last stride 1) stage models used by MMGA.

    Args:
        input_shape: `(H, W, 3)` of the (already preprocessed) image; H and W
            must be divisible by 16.
        weights: `"imagenet"` (downloaded by Keras, or taken from its cache
            `~/.keras/models/`), `None` (random initialisation) or the path to
            the Keras `resnet50_..._notop.h5` weights file.
        sync_batchnorm: bool, synchronised BatchNormalization across replicas.
        dtype: dtype policy of every layer (default: the global policy).

    Returns:
        Dict with functional models `"stem"`, `"stage3"` and `"stage4"`.

    Example:
    ```python
    stages = build_resnet50_stages((128, 64, 3), weights=None)
    stages["stage4"].output.shape
    ```
    """
    height, width, channels = input_shape
    if channels != 3 or height % 16 or width % 16:
        raise ValueError(
            f"input_shape must be (H, W, 3) with H and W divisible by 16, got {input_shape}."
        )
    # A functional model casts its inputs to the Input's dtype (float32 by
    # default): a float64 model would round every stage boundary to float32.
    policy = keras.dtype_policies.get(dtype) if dtype is not None else keras.config.dtype_policy()
    input_dtype = "float64" if policy.compute_dtype == "float64" else None
    image = keras.Input(input_shape, name="image", dtype=input_dtype)
    x = keras.layers.ZeroPadding2D(((3, 3), (3, 3)), name="conv1_pad", dtype=dtype)(image)
    x = keras.layers.Conv2D(64, 7, strides=2, name="conv1_conv", dtype=dtype)(x)
    x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM,
        epsilon=_BN_EPSILON, synchronized=sync_batchnorm, name="conv1_bn", dtype=dtype
    )(x)
    x = keras.layers.Activation("relu", name="conv1_relu", dtype=dtype)(x)
    x = keras.layers.ZeroPadding2D(((1, 1), (1, 1)), name="pool1_pad", dtype=dtype)(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool1_pool", dtype=dtype)(x)
    stem = keras.Model(image, _stacks(x, "stem", sync_batchnorm, dtype), name="resnet50_stem")

    h, w = height // 16, width // 16
    x3 = keras.Input((2 * h, 2 * w, 512), name="stage2_features", dtype=input_dtype)
    stage3 = keras.Model(x3, _stacks(x3, "stage3", sync_batchnorm, dtype), name="resnet50_stage3")
    x4 = keras.Input((h, w, 1024), name="stage3_features", dtype=input_dtype)
    stage4 = keras.Model(x4, _stacks(x4, "stage4", sync_batchnorm, dtype), name="resnet50_stage4")
    stages = {"stem": stem, "stage3": stage3, "stage4": stage4}

    if weights is not None:
        _copy_weights(stages, _reference_resnet50(input_shape, weights))
    return stages


def _reference_resnet50(input_shape, weights):
    """`keras.applications.ResNet50` holding the requested weights."""
    if weights != "imagenet":
        path = os.fspath(weights)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"Backbone weights file not found: {path!r}. Pass backbone_weights="
                f"'imagenet', None, or the path of Keras's {WEIGHTS_FILE}."
            )
        weights = path
    try:
        return keras.applications.ResNet50(
            include_top=False, weights=weights, input_shape=input_shape
        )
    except Exception as err:  # Keras raises a bare Exception on a failed download.
        if weights != "imagenet":
            raise ValueError(f"Could not load ResNet50 weights from {weights!r}: {err}") from err
        raise _unavailable(err) from err


def _unavailable(err):
    cache = os.path.join(os.environ.get("KERAS_HOME", os.path.expanduser("~/.keras")), "models")
    # A ConnectionError (an OSError): the command line reports it as one `error:` line.
    return ConnectionError(
        "Could not obtain the ImageNet ResNet50 weights (no network access?). "
        f"Download {WEIGHTS_FILE} once and put it in {cache}/, or pass its path "
        "as backbone_weights=... (--backbone-weights PATH), or use backbone_weights=None "
        f"(--backbone-weights none) for random initialisation. Underlying error: {' '.join(str(err).split())}"
    )


def fetch_imagenet_weights():
    """The path of the ImageNet ResNet50 notop weights, downloaded into Keras's cache if missing.

    The engine calls it before reading any data, so an offline machine fails
    in a second with the ways to get the file, not after the data checks.

    Raises:
        ConnectionError: the file is not cached and cannot be downloaded.
    """
    from keras.src.applications import resnet

    try:
        return keras.utils.get_file(WEIGHTS_FILE, resnet.BASE_WEIGHTS_PATH + WEIGHTS_FILE, cache_subdir="models",
                                    file_hash=resnet.WEIGHTS_HASHES["resnet50"][1])
    except Exception as err:  # Keras raises a bare Exception on a failed download.
        raise _unavailable(err) from err


def _copy_weights(stages, reference):
    for model in stages.values():
        for layer in model.layers:
            if layer.weights:
                layer.set_weights(reference.get_layer(layer.name).get_weights())

