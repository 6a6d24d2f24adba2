"""Image preprocessing for the exported graph: any image (file or array, any size) to float32 RGB at the model's size.

TensorFlow-free (OpenCV and NumPy; used by export and deploy), and matched to the training pipeline's
decoding and resizing (see `preprocess` and `tests/test_deploy.py`).
"""

import os

import cv2
import numpy as np

from keras_mmga.image_io import read_image


def preprocess(image, image_size, color="rgb"):
    """One image → float32 RGB `(H, W, 3)` in [0, 255] at the model's size.

    Resizing is bilinear with half-pixel centres (`cv2.INTER_LINEAR` on float32
    pixels), as the training and evaluation pipelines'
    `tf.image.resize(..., "bilinear")`: identical when shrinking, < 2e-3 grey
    levels apart when enlarging. JPEG files are decoded with libjpeg's accurate
    integer IDCT, identical to `tf.io.decode_jpeg(dct_method="INTEGER_ACCURATE")`;
    TensorFlow's default (fast) IDCT differs by up to ~18 grey levels; the
    training pipeline (`keras_mmga.data.images.decode`) uses the accurate one too.
    See `tests/test_deploy.py`.

    Args:
        image: a path, or an `(H, W, 3)` array: uint8, or float in [0, 255].
        image_size: `(H, W)` to resize to.
        color: channel order of an array, `"rgb"` or `"bgr"` (OpenCV's);
            files are always read correctly.

    Example:
    ```python
    preprocess(cv2.imread("a.jpg"), (384, 128), color="bgr").shape
    ```
    """
    if color not in ("rgb", "bgr"):
        raise ValueError(f"color must be 'rgb' or 'bgr', got {color!r}.")
    if isinstance(image, (str, os.PathLike)):
        image, color = read_image(image), "bgr"
    elif not isinstance(image, np.ndarray):
        raise TypeError(f"Expected an image path or a numpy array, got {type(image).__name__}.")
    if image.ndim != 3 or image.shape[2] != 3:
        channels = 1 if image.ndim == 2 else (image.shape[-1] if image.ndim == 3 else None)
        hint = {1: " (grey: cv2.cvtColor(x, cv2.COLOR_GRAY2RGB))", 4: " (drop the alpha channel)"}.get(channels, "")
        raise ValueError(f"Expected an (H, W, 3) colour image, got shape {image.shape}{hint}.")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"Empty image of shape {image.shape}.")
    if image.dtype == np.uint8:
        image = image.astype(np.float32)
    elif image.dtype in (np.float32, np.float64, np.float16):
        image = image.astype(np.float32)
        if not np.all(np.isfinite(image)) or image.min() < 0 or image.max() > 255:
            raise ValueError("Float pixels must be finite and in [0, 255] (raw pixels; the model normalises).")
        if 0 < image.max() <= 1.0 and np.any(image != np.round(image)):
            raise ValueError("Float pixels look scaled to [0, 1]; the model expects [0, 255] (multiply by 255).")
    else:
        raise ValueError(f"Expected uint8 or float pixels in [0, 255], got dtype {image.dtype}.")
    h, w = image_size
    if image.shape[:2] != (h, w):
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
    return image[..., ::-1] if color == "bgr" else image


def graph_layout(shape):
    """`"NCHW"` or `"NHWC"` of an exported graph's image input `shape` (N, ..., ...): channels first when the
    second axis is 3 and the last is not (H and W of a keras-mmga export are multiples of 16)."""
    return "NCHW" if shape[1] == 3 and shape[3] != 3 else "NHWC"


def as_list(images):
    """One image or a batch (a path, an array, an `(N, H, W, 3)` array, a list) as a list of images."""
    if isinstance(images, (str, os.PathLike)):
        return [images]
    if isinstance(images, np.ndarray):
        if images.ndim == 3:
            return [images]
        if images.ndim == 4:
            return list(images)
        raise ValueError(f"Expected an (H, W, 3) image or an (N, H, W, 3) batch, got shape {images.shape}.")
    if isinstance(images, (list, tuple)):
        return list(images)
    raise TypeError(f"Expected image paths or arrays, got {type(images).__name__}.")


# The field's input convention (torchvision, timm, torchreid, fast-reid, BoxMOT): RGB / 255, then (x - mean) / std.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def field_images(rgb):
    """Raw RGB `(N, H, W, 3)` in [0, 255] → the field's input `(N, 3, H, W)`: /255, ImageNet mean / std.

    What BoxMOT's `prepare_crop_batch` does after resizing (in float32); the
    input of the `"field"` and `"boxmot"` export profiles (`keras_mmga.export.profiles`).

    Example:
    ```python
    field_images(np.stack([preprocess("a.jpg", (256, 128))])).shape  # (1, 3, 256, 128)
    ```
    """
    return graph_input(rgb, "NCHW", normalised=True)


def preprocess_batch(images, image_size, color="rgb"):
    """One image or many (paths, arrays of any size) → float32 RGB `(N, H, W, 3)` in [0, 255] (`preprocess` each).

    Example:
    ```python
    preprocess_batch(["a.jpg", "b.png"], (256, 128)).shape  # (2, 256, 128, 3)
    ```
    """
    return np.stack([preprocess(x, image_size, color) for x in as_list(images)])


def graph_input(rgb, layout="NHWC", normalised=False):
    """Raw RGB `(N, H, W, 3)` in [0, 255] → what an export takes, as its model card's `"input"` says.

    Args:
        rgb: float32 RGB batch in [0, 255] (`preprocess_batch`).
        layout: the graph's `"NHWC"` or `"NCHW"`.
        normalised: the field's values (card `"mean"` / `"std"` set: the
            `"field"` and `"boxmot"` profiles): RGB / 255, ImageNet mean / std;
            else the raw [0, 255] pixels.

    Example:
    ```python
    graph_input(preprocess_batch("a.jpg", (256, 128)), "NCHW", normalised=True).shape  # (1, 3, 256, 128)
    ```
    """
    x = np.asarray(rgb, np.float32)
    if normalised:
        x = (x / np.float32(255.0) - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
    if layout not in ("NHWC", "NCHW"):
        raise ValueError(f"layout must be 'NHWC' or 'NCHW', got {layout!r}.")
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2) if layout == "NCHW" else x)
