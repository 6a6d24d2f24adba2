"""Export profiles: which input convention the exported graph takes, and what is written beside it.

- `"default"`: float32 RGB in [0, 255], NHWC (NCHW with `nchw=True`), input
  `images`, output `features`. The model's own preprocessing is in the graph.
- `"field"`: the convention of torchreid, fast-reid and BoxMOT: float32 NCHW,
  RGB scaled to [0, 1] and normalised by the ImageNet mean / std,
  `x = (rgb / 255 - mean) / std`. The graph maps that back to what the
  network's first convolution expects with one affine map per channel,
  composed with the model's own preprocessing mode (`model.preprocessing`):
  for `"caffe"` that is `x * 255 std + 255 mean - caffe_mean` plus the RGB -> BGR
  gather, for `"torch"` (which is the same normalisation) nothing at all.
- `"boxmot"`: `"field"` with the tensor names BoxMOT's ONNX and TensorRT
  backends look for (input `images`, output `output0`) and the sidecar
  `<file>.metadata.json` BoxMOT reads the architecture name and crop size
  from (boxmot/reid/core/artifacts.py, registry.py); H x W are fixed in the
  graph, which BoxMOT's ONNX backend takes as the crop size.

Example:
```python
from keras_mmga.export.profiles import field_images, network_affine
net_scale, net_offset, order = network_affine("caffe")
```
"""

import json
import os

import numpy as np

# The field's normalisation (RGB / 255, ImageNet mean / std) lives with the TensorFlow-free preprocessing,
# which deploy shares.
from keras_mmga.preprocessing import IMAGENET_MEAN, IMAGENET_STD, field_images  # noqa: F401
from keras_mmga.preprocessing import graph_input as _graph_input

PROFILES = ("default", "field", "boxmot")

# What each profile calls its tensors.
TENSOR_NAMES = {"default": ("images", "features"), "field": ("images", "features"), "boxmot": ("images", "output0")}

# The model's own preprocessing, RGB [0, 255] -> network input, per output channel:
# network[c] = rgb[order[c]] * scale[c] + offset[c]. Must match
# keras_mmga.models.mmga_backbone (tests/test_export_clients.py checks it does).
_CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
_TORCH_RGB_MEAN = (123.675, 116.28, 103.53)
_TORCH_RGB_STD = (58.395, 57.12, 57.375)
_MODEL_PREPROCESSING = {
    "caffe": ((2, 1, 0), (1.0, 1.0, 1.0), tuple(-m for m in _CAFFE_BGR_MEAN)),
    "torch": (
        (0, 1, 2),
        tuple(1.0 / s for s in _TORCH_RGB_STD),
        tuple(-m / s for m, s in zip(_TORCH_RGB_MEAN, _TORCH_RGB_STD)),
    ),
    None: ((0, 1, 2), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0)),
}


def check_profile(profile):
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {', '.join(PROFILES)}, got {profile!r}.")
    return profile


def is_field(profile):
    """Whether `profile` takes the field's input (NCHW, ImageNet-normalised)."""
    return check_profile(profile) in ("field", "boxmot")


def layout(profile, nchw=False):
    """The graph's input layout: NCHW for the field profiles (their convention) or with `nchw`, else NHWC."""
    return "NCHW" if is_field(profile) or nchw else "NHWC"


def graph_input(images, profile="default", nchw=False):
    """Raw RGB `(N, H, W, 3)` in [0, 255] → what the export of `profile` takes (for parity checks, calibration).

    Every runtime's check feeds through this one function, as the package's
    extractor does from the model card (`keras_mmga.preprocessing.graph_input`).
    """
    return _graph_input(images, layout(profile, nchw), normalised=is_field(profile))


def write_sidecars(path, profile, image_size):
    """Writes what `profile` puts beside the export at `path` (BoxMOT's metadata); returns its path or None."""
    return write_boxmot_metadata(path, image_size) if check_profile(profile) == "boxmot" else None


def network_affine(mode):
    """`(order, scale, offset)` (float64) taking the field's input to the network's input for preprocessing `mode`.

    The field's input is `f = (rgb / 255 - mean) / std`, so `rgb = f * 255 std + 255 mean`;
    composed with the model's map `network[c] = rgb[order[c]] * s[c] + o[c]` it is
    `network[c] = f[order[c]] * (255 std[order[c]] s[c]) + (255 mean[order[c]] s[c] + o[c])`.
    Returns None for a mode this module does not know (the export then maps back to
    [0, 255] and lets the model preprocess).
    """
    if mode not in _MODEL_PREPROCESSING:
        return None
    order, s, o = (np.asarray(v, np.float64) for v in _MODEL_PREPROCESSING[mode])
    order = order.astype(int)
    mean = 255.0 * np.asarray(IMAGENET_MEAN, np.float64)[order]
    std = 255.0 * np.asarray(IMAGENET_STD, np.float64)[order]
    return tuple(int(i) for i in order), std * s, mean * s + o


def is_identity(affine, tolerance=1e-6):
    """Whether an `(order, scale, offset)` map changes nothing (the model already takes the field's input)."""
    order, scale, offset = affine
    return (
        tuple(order) == (0, 1, 2)
        and np.allclose(scale, 1.0, rtol=0, atol=tolerance)
        and np.allclose(offset, 0.0, rtol=0, atol=tolerance)
    )


def input_contract(profile, image_size, nchw=False, mode="caffe"):
    """The model card's `"input"` entry for `profile` (what to feed, exactly)."""
    h, w = image_size
    name = TENSOR_NAMES[check_profile(profile)][0]
    if is_field(profile):
        return {
            "name": name,
            "layout": "NCHW",
            "shape": ["N", 3, h, w],
            "dtype": "float32",
            "values": "RGB / 255, minus ImageNet mean, divided by ImageNet std, resized to H x W (bilinear)",
            "range": [0.0, 1.0],
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
            "converted_in_graph_to": f"the model's own preprocessing ({mode}) as one affine map per channel",
        }
    return {
        "name": name,
        "layout": "NCHW" if nchw else "NHWC",
        "shape": ["N", 3, h, w] if nchw else ["N", h, w, 3],
        "dtype": "float32",
        "values": "RGB in [0, 255], resized to H x W (bilinear), no normalisation",
        "range": [0.0, 255.0],
        "mean": None,
        "std": None,
    }


def boxmot_metadata_path(path):
    """BoxMOT's sidecar of an artifact: `model.onnx` → `model.onnx.metadata.json` (boxmot/reid/core/artifacts.py)."""
    return os.fspath(path) + ".metadata.json"


def write_boxmot_metadata(path, image_size, model_name="mmga"):
    """Writes BoxMOT's `<file>.metadata.json` for the export at `path` and returns its path.

    BoxMOT reads `model_name` (instead of guessing the architecture from the file
    name) and `model_kwargs.img_size` (the crop size; its TFLite backend has no
    other source for it, its ONNX backend checks it against the graph).
    `preprocess: "resize"` is BoxMOT's plain bilinear resize of each crop.
    """
    h, w = (int(v) for v in image_size)
    metadata = {
        "schema_version": 1,
        "model_name": model_name,
        "preprocess": "resize",
        "model_kwargs_schema_version": 1,
        "model_kwargs": {"img_size": [h, w]},
        "img_size": [h, w],
        "exported_by": "keras-mmga",
    }
    out = boxmot_metadata_path(path)
    with open(out, "w") as f:
        json.dump(metadata, f, indent=2, sort_keys=True)
    return out
