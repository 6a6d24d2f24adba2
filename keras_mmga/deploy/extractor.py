"""`OnnxFeatureExtractor`: L2-normalised features of images from an exported model, on ONNX Runtime.

Example:
```python
from keras_mmga.deploy import OnnxFeatureExtractor
OnnxFeatureExtractor("exported/mmga_market.onnx")(["a.jpg", "b.jpg"]).shape
```
"""

import functools
import os
import warnings

import numpy as np

from keras_mmga.image_io import sha256
from keras_mmga.model_card import card_path_for, read_model_card
from keras_mmga.preprocessing import as_list, graph_input, graph_layout, preprocess_batch


def _is_keras_archive(path):
    """A `.keras` file (a zip holding config.json), whatever its name."""
    if path.endswith(".keras"):
        return True
    import zipfile

    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return "config.json" in archive.namelist()


class OnnxFeatureExtractor:
    """L2-normalised features from an exported model, for image files or arrays of any size.

    The input size and layout (NHWC or NCHW) come from the model card beside
    the `.onnx` file when there is one, else from the graph's input shape.
    Every image is resized to the model's size (see `preprocess`) and fed as
    float32 RGB in [0, 255]; the mean subtraction is in the graph.

    Args:
        onnx_path: a model written by `keras_mmga.export.export_onnx`.
        providers: ONNX Runtime execution providers, e.g.
            `["CUDAExecutionProvider", "CPUExecutionProvider"]` (default CPU).
        batch_size: images per ONNX Runtime call.

    Example:
    ```python
    extractor = OnnxFeatureExtractor("exported/mmga.onnx")
    extractor(["a.jpg", "b.jpg"]).shape          # files
    extractor(frame[y0:y1, x0:x1], color="bgr")  # an OpenCV crop
    ```
    """

    def __init__(self, onnx_path, providers=None, batch_size=32):
        import onnxruntime as ort

        path = os.fspath(onnx_path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"ONNX model not found: {path!r}.")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}.")
        if _is_keras_archive(path):
            # A training checkpoint is not what ONNX Runtime reads ("Protobuf parsing failed").
            raise ValueError(
                f"{path!r} is a Keras checkpoint (.keras), not an ONNX export: export it first "
                f"(keras-mmga export --model {path} --output exported/), then search with the .onnx file."
            )
        self.path, self.batch_size = path, int(batch_size)
        try:
            self.session = ort.InferenceSession(path, providers=providers or ["CPUExecutionProvider"])
        except Exception as err:  # ONNX Runtime's own classes (InvalidProtobuf, Fail, ...), all plain Exception
            raise ValueError(f"ONNX Runtime cannot load {path!r}: {err}") from err
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        # "output0": the BoxMOT profile's name (keras_mmga.export.profiles).
        if (
            len(inputs) != 1
            or inputs[0].name != "images"
            or [o.name for o in outputs] not in (["features"], ["output0"])
        ):
            raise ValueError(f"{path!r} is not a keras-mmga export (expected input 'images' and output 'features').")
        self.output_name = outputs[0].name
        if inputs[0].type != "tensor(float)":
            raise ValueError(f"{path!r}: input 'images' must be float32, got {inputs[0].type}.")
        shape = inputs[0].shape
        if len(shape) != 4 or not all(isinstance(d, int) for d in shape[1:]):
            raise ValueError(f"{path!r}: expected input (N, H, W, 3) or (N, 3, H, W) with fixed H, W; got {shape}.")
        if len(outputs[0].shape) != 2:
            raise ValueError(
                f"{path!r} is not a keras-mmga export: output 'features' must be (N, D), got {outputs[0].shape}."
            )
        card_path = card_path_for(path)
        self.card = read_model_card(card_path) if os.path.isfile(card_path) else None
        # The field / BoxMOT profiles take ImageNet-normalised RGB / 255: their card's input has a mean and std.
        self.normalised = (self.card or {}).get("input", {}).get("mean") is not None
        if self.card is None:
            # Without the card nothing says this graph wants what `preprocess` gives (RGB pixels in
            # [0, 255], normalised inside the graph) or returns L2-normalised features: say so once.
            warnings.warn(
                f"{path!r} has no model card ({os.path.basename(card_path)}): cannot check that it is a "
                "keras-mmga export (RGB pixels in [0, 255] in, features out); its input layout is guessed "
                "from the shape and images are fed as keras-mmga exports take them.",
                stacklevel=2,
            )
            self.layout = graph_layout(shape)
        else:
            self.layout = self.card["input"]["layout"]
            if list(self.card["input"]["shape"][1:]) != list(shape[1:]):
                raise ValueError(
                    f"{card_path!r} describes input {self.card['input']['shape']}, but {path!r} takes {shape}: "
                    "the card belongs to another export (re-export, or remove the card)."
                )
        expected_channels = shape[1] if self.layout == "NCHW" else shape[3]
        if expected_channels != 3:
            raise ValueError(f"{path!r}: input shape {shape} does not match layout {self.layout}.")
        self.image_size = tuple(shape[2:4]) if self.layout == "NCHW" else tuple(shape[1:3])
        self.input_shape = tuple(shape[1:])
        dim = outputs[0].shape[-1]
        self.feature_dim = dim if isinstance(dim, int) else None

    def run(self, batch):
        """Features of an already prepared float32 batch in the graph's layout.

        This is the raw ONNX Runtime call with a guard: the graph has a fixed
        H, W, and a wrong size or layout gets an error that names the expected
        shape instead of ONNX Runtime's.

        Example:
        ```python
        extractor.run(np.zeros((2, 384, 128, 3), np.float32)).shape
        ```
        """
        batch = np.asarray(batch)
        if batch.dtype != np.float32:
            raise ValueError(f"Expected a float32 batch, got {batch.dtype}.")
        if batch.ndim != 4 or batch.shape[1:] != self.input_shape:
            expected = ("N",) + self.input_shape
            raise ValueError(
                f"{os.path.basename(self.path)} takes {self.layout} input of shape {expected} (fixed H, W), "
                f"got {batch.shape}; pass images through the extractor's call to resize them."
            )
        return self.session.run([self.output_name], {"images": np.ascontiguousarray(batch)})[0]

    def preprocess(self, images, color="rgb"):
        """Images (paths or arrays) → the float32 batch `run` takes."""
        return graph_input(preprocess_batch(images, self.image_size, color), self.layout, self.normalised)

    @functools.cached_property
    def sha256(self):
        """sha256 of the `.onnx` file (what a gallery index records), hashed once."""
        return sha256(self.path)

    def __call__(self, images, color="rgb"):
        """`(N, D)` L2-normalised features.

        Args:
            images: a path, an `(H, W, 3)` array, an `(N, H, W, 3)` array or a
                list of paths / arrays (sizes may differ).
            color: channel order of the arrays, `"rgb"` or `"bgr"`.
        """
        items = as_list(images)
        if not items:
            raise ValueError("No images given.")
        out = [
            self.run(self.preprocess(items[i : i + self.batch_size], color))
            for i in range(0, len(items), self.batch_size)
        ]
        return np.concatenate(out)
