"""ResNet50 with the last spatial down-sampling removed, split at MMGA's taps.

MMGA re-weights stage 3 with an attention computed from stage 2, and feeds the
re-weighted stage 3 (not the raw one) into stage 4. The backbone is therefore
built as three functional models chained by the caller:

* `stem`: image → `conv3_block4_out` (stage 2, stride 8, 512 channels);
* `stage3`: → `conv4_block6_out` (stride 16, 1024 channels);
* `stage4`: → `conv5_block3_out` (stride 16: its first block has stride 1,
  the "last stride 1" trick; 2048 channels).

Two layouts (`BACKBONES`), with the same layer names so the stage split, the
learning-rate groups and the attention placement are one code path:

* `"resnet50"`: `keras.applications.ResNet50` (the Caffe-converted v1: a
  down-sampling block strides its first 1x1 conv; convolutions with biases),
  so Keras's ImageNet weights copy over layer by layer;
* `"resnet50_v1.5"`: torchvision's / timm's ResNet50 (the stride sits on the
  3x3 conv, padded 1 on every side as PyTorch pads; no conv biases; BatchNorm
  epsilon 1e-5), which loads torchvision / timm checkpoints
  (`keras_mmga.models.torch_weights`): the paper's ImageNet start.
"""

import os

import keras

from keras_mmga.layers.batchnorm import BN_MOMENTUM
from keras_mmga.models import torch_weights
from keras_mmga.settings import BACKBONES

# keras.applications.ResNet50 stacks: (name, filters, blocks, first stride).
_STAGES = {
    "stem": [("conv2", 64, 3, 1), ("conv3", 128, 4, 2)],
    "stage3": [("conv4", 256, 6, 2)],
    "stage4": [("conv5", 512, 3, 1)],  # stride 2 in ResNet50; removed here
}
_BN_EPSILON = {"resnet50": 1.001e-5, "resnet50_v1.5": 1e-5}
WEIGHTS_FILE = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"


def _block(x, filters, stride, conv_shortcut, name, sync_bn, dtype, arch):
    v15 = arch == "resnet50_v1.5"
    bn = lambda n: keras.layers.BatchNormalization(  # noqa: E731
        momentum=BN_MOMENTUM, axis=-1, epsilon=_BN_EPSILON[arch], synchronized=sync_bn, name=n, dtype=dtype
    )
    conv = lambda f, k, n, **kw: keras.layers.Conv2D(f, k, name=n, dtype=dtype, use_bias=not v15, **kw)  # noqa: E731
    relu = lambda n: keras.layers.Activation("relu", name=n, dtype=dtype)  # noqa: E731
    if conv_shortcut:
        shortcut = bn(name + "_0_bn")(conv(4 * filters, 1, name + "_0_conv", strides=stride)(x))
    else:
        shortcut = x
    # v1 strides the first 1x1 conv, v1.5 the 3x3 one. A strided "same" conv pads (0, 1) on an
    # even input where PyTorch pads (1, 1): v1.5 pads explicitly to compute torchvision's function.
    stride1, stride2 = (1, stride) if v15 else (stride, 1)
    x = relu(name + "_1_relu")(bn(name + "_1_bn")(conv(filters, 1, name + "_1_conv", strides=stride1)(x)))
    if v15:
        x = keras.layers.ZeroPadding2D(1, name=name + "_2_pad", dtype=dtype)(x)
        x = conv(filters, 3, name + "_2_conv", strides=stride2)(x)
    else:
        x = conv(filters, 3, name + "_2_conv", padding="same")(x)
    x = relu(name + "_2_relu")(bn(name + "_2_bn")(x))
    x = bn(name + "_3_bn")(conv(4 * filters, 1, name + "_3_conv")(x))
    x = keras.layers.Add(name=name + "_add", dtype=dtype)([shortcut, x])
    return relu(name + "_out")(x)


def _stacks(x, stage, sync_bn, dtype, arch):
    for stack, filters, blocks, stride in _STAGES[stage]:
        x = _block(x, filters, stride, True, f"{stack}_block1", sync_bn, dtype, arch)
        for i in range(2, blocks + 1):
            x = _block(x, filters, 1, False, f"{stack}_block{i}", sync_bn, dtype, arch)
    return x


def check_backbone(name):
    if name not in BACKBONES:
        raise ValueError(f"backbone must be one of {', '.join(BACKBONES)}, got {name!r}.")
    return name


def build_resnet50_stages(
    input_shape=(384, 128, 3), weights="imagenet", sync_batchnorm=False, dtype=None, backbone="resnet50"
):
    """Builds the three ResNet50 (last stride 1) stage models used by MMGA.

    Args:
        input_shape: `(H, W, 3)` of the (already preprocessed) image; H and W
            must be divisible by 16.
        weights: `None` (random initialisation), or for `"resnet50"`:
            `"imagenet"` (downloaded by Keras, or taken from its cache
            `~/.keras/models/`) or the path to the Keras
            `resnet50_..._notop.h5` weights file; for `"resnet50_v1.5"`: a
            torchvision `.pth` file, a `.safetensors` file, a timm / Hugging
            Face model folder, or `"hf://timm/resnet50.tv_in1k"` (downloaded
            with `huggingface_hub`, the `hub` extra; online only) or
            `"keras_hub:resnet_50_imagenet"` (a keras-hub preset name or
            folder; the `hub` extra).
        sync_batchnorm: bool, synchronised BatchNormalization across replicas.
        dtype: dtype policy of every layer (default: the global policy).
        backbone: `"resnet50"` or `"resnet50_v1.5"` (see the module docstring).

    Returns:
        Dict with functional models `"stem"`, `"stage3"` and `"stage4"`.

    Example:
    ```python
    stages = build_resnet50_stages((128, 64, 3), weights=None)
    stages["stage4"].output.shape
    ```
    """
    arch = check_backbone(backbone)
    height, width, channels = input_shape
    if channels != 3 or height % 16 or width % 16:
        raise ValueError(f"input_shape must be (H, W, 3) with H and W divisible by 16, got {input_shape}.")
    # A functional model casts its inputs to the Input's dtype (float32 by
    # default): a float64 model would round every stage boundary to float32.
    policy = keras.dtype_policies.get(dtype) if dtype is not None else keras.config.dtype_policy()
    input_dtype = "float64" if policy.compute_dtype == "float64" else None
    image = keras.Input(input_shape, name="image", dtype=input_dtype)
    x = keras.layers.ZeroPadding2D(((3, 3), (3, 3)), name="conv1_pad", dtype=dtype)(image)
    x = keras.layers.Conv2D(64, 7, strides=2, name="conv1_conv", dtype=dtype, use_bias=arch == "resnet50")(x)
    x = keras.layers.BatchNormalization(
        momentum=BN_MOMENTUM, epsilon=_BN_EPSILON[arch], synchronized=sync_batchnorm, name="conv1_bn", dtype=dtype
    )(x)
    x = keras.layers.Activation("relu", name="conv1_relu", dtype=dtype)(x)
    x = keras.layers.ZeroPadding2D(((1, 1), (1, 1)), name="pool1_pad", dtype=dtype)(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool1_pool", dtype=dtype)(x)
    stem = keras.Model(image, _stacks(x, "stem", sync_batchnorm, dtype, arch), name="resnet50_stem")

    h, w = height // 16, width // 16
    x3 = keras.Input((2 * h, 2 * w, 512), name="stage2_features", dtype=input_dtype)
    stage3 = keras.Model(x3, _stacks(x3, "stage3", sync_batchnorm, dtype, arch), name="resnet50_stage3")
    x4 = keras.Input((h, w, 1024), name="stage3_features", dtype=input_dtype)
    stage4 = keras.Model(x4, _stacks(x4, "stage4", sync_batchnorm, dtype, arch), name="resnet50_stage4")
    stages = {"stem": stem, "stage3": stage3, "stage4": stage4}

    if weights is not None:
        _set_layer_weights(stages, _layer_weights(arch, weights, input_shape), weights)
    return stages


KERAS_HUB_PREFIX = "keras_hub:"
_V15_IMAGENET = (
    "backbone 'resnet50_v1.5' takes torchvision / timm weights: pass the path of torchvision's "
    "resnet50-11ad3fa6.pth (V2) or resnet50-0676ba61.pth (V1), a timm folder such as resnet50.tv_in1k, "
    "'hf://timm/resnet50.tv_in1k' (online) or 'keras_hub:resnet_50_imagenet'; 'imagenet' names Keras's "
    "weights of the 'resnet50' backbone."
)


def _layer_weights(arch, weights, input_shape):
    """Keras layer name → weights, from whatever source `weights` names for the layout `arch`."""
    if arch == "resnet50":
        reference = _reference_resnet50(input_shape, weights)
        return {layer.name: layer.get_weights() for layer in reference.layers if layer.weights}
    weights = os.fspath(weights)
    if weights.startswith(KERAS_HUB_PREFIX):
        return keras_hub_layer_weights(weights[len(KERAS_HUB_PREFIX) :])
    return torch_weights.keras_layer_weights(read_torch_weights(weights))


def keras_hub_layer_weights(preset):
    """Keras layer name → weights from a keras-hub ResNet50 preset (`resnet_50_imagenet`, or a local preset folder).

    keras-hub's `ResNetBackbone` with bottleneck blocks is torchvision's layout (its presets are
    converted from timm); only the layer names differ: `stack{s}_block{b}_*` is `conv{s+2}_block{b+1}_*`.
    """
    try:
        import keras_hub
    except ImportError as err:
        raise ImportError(
            f"backbone_weights='{KERAS_HUB_PREFIX}{preset}' needs keras-hub: pip install 'keras-mmga[hub]'."
        ) from err
    try:
        hub = keras_hub.models.ResNetBackbone.from_preset(preset)
    except Exception as err:  # offline: kagglehub's download error; a typo: keras-hub's own
        raise ConnectionError(
            f"Could not load the keras-hub preset {preset!r} (offline, or not a ResNet preset?): pass a "
            f"downloaded preset folder as '{KERAS_HUB_PREFIX}/path/to/folder', or torchvision / timm weights as "
            f"a path. Underlying error: {' '.join(str(err).split())[:300]}"
        ) from err
    out = {}
    for layer in hub.layers:
        if not layer.weights:
            continue
        name = layer.name
        if name.startswith("stack"):
            stack, block, rest = name.split("_", 2)
            name = f"conv{int(stack[len('stack') :]) + 2}_block{int(block[len('block') :]) + 1}_{rest}"
        out[name] = [w.numpy() if hasattr(w, "numpy") else keras.ops.convert_to_numpy(w) for w in layer.weights]
    return out


def check_torch_weights_argument(weights):
    """Fails at once (before any data is read) on a `resnet50_v1.5` weights argument that cannot load.

    Downloads (`hf://`, keras-hub presets) are not tried here: they fail, with their own message, when
    the model is built.
    """
    weights = os.fspath(weights)
    if weights == "imagenet":
        raise ValueError(_V15_IMAGENET)
    if not weights.startswith(("hf://", KERAS_HUB_PREFIX)):
        torch_weights.resolve_weights_file(weights)


def read_torch_weights(weights):
    """The NumPy state dict of a `resnet50_v1.5` weights argument (file, folder or `hf://` handle)."""
    weights = os.fspath(weights)
    if weights == "imagenet":
        raise ValueError(_V15_IMAGENET)
    if weights.startswith("hf://"):
        weights = _download_hf(weights)
    return torch_weights.read_state_dict(weights)


def _download_hf(handle):
    try:
        import huggingface_hub
    except ImportError as err:
        raise ImportError(
            f"{handle!r} needs huggingface_hub (pip install 'keras-mmga[hub]'), or download the folder "
            "once and pass its path."
        ) from err
    try:
        return huggingface_hub.snapshot_download(handle[len("hf://") :], allow_patterns=["*.safetensors", "*.json"])
    except Exception as err:  # offline: a connection or "not in the local cache" error of the hub client
        raise ConnectionError(
            f"Could not download {handle!r} (no network access?): download the model folder once and pass "
            f"its path as backbone_weights. Underlying error: {' '.join(str(err).split())[:300]}"
        ) from err


def weights_info(weights):
    """`{"source", "sha256"}` of loaded backbone weights, for the model card (sha256 of the file read)."""
    from keras_mmga.image_io import sha256

    source = os.fspath(weights)
    path = None
    if source == "imagenet":
        cached = os.path.join(os.environ.get("KERAS_HOME", os.path.expanduser("~/.keras")), "models", WEIGHTS_FILE)
        path = cached if os.path.isfile(cached) else None
    elif source.startswith(KERAS_HUB_PREFIX):
        folder_file = os.path.join(source[len(KERAS_HUB_PREFIX) :], "model.weights.h5")
        path = folder_file if os.path.isfile(folder_file) else None
    elif os.path.exists(source):
        path = torch_weights.resolve_weights_file(source) if os.path.isdir(source) else source
    return {"source": source, "sha256": sha256(path) if path else None}


def _set_layer_weights(stages, layer_weights, source):
    for model in stages.values():
        for layer in model.layers:
            if layer.weights:
                if layer.name not in layer_weights:
                    raise ValueError(f"{source!r} has no weights for {layer.name} (a ResNet50 checkpoint?).")
                values = layer_weights[layer.name]
                expected = [tuple(w.shape) for w in layer.weights]
                if [v.shape for v in values] != expected:
                    raise ValueError(
                        f"{source!r}: {layer.name} has shapes {[v.shape for v in values]}, the model "
                        f"expects {expected} (a ResNet50 checkpoint?)."
                    )
                layer.set_weights(values)


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
        return keras.applications.ResNet50(include_top=False, weights=weights, input_shape=input_shape)
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
        return keras.utils.get_file(
            WEIGHTS_FILE,
            resnet.BASE_WEIGHTS_PATH + WEIGHTS_FILE,
            cache_subdir="models",
            file_hash=resnet.WEIGHTS_HASHES["resnet50"][1],
        )
    except Exception as err:  # Keras raises a bare Exception on a failed download.
        raise _unavailable(err) from err
