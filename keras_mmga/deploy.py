"""Deployment with ONNX Runtime: a feature extractor and an on-disk gallery index.

Inference runs on ONNX Runtime, OpenCV and numpy; TensorFlow is not used
(importing the `keras_mmga` package still loads Keras).

Example:
>>> from keras_mmga.deploy import GalleryIndex, OnnxFeatureExtractor
>>> extractor = OnnxFeatureExtractor("exported/mmga_market.onnx")
>>> index = GalleryIndex.build(extractor, "Market-1501/bounding_box_test")
>>> index.save("market_gallery")          # market_gallery.index.npz + market_gallery.index.json
>>> index.query("Market-1501/query/0001_c1s1_001051_00.jpg", topk=5, extractor=extractor)[0]["pid"]
1
"""

import hashlib
import json
import os
import zipfile

import cv2
import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
# The "format" of the model card `NAME.json` that `keras_mmga.export` writes
# beside `NAME.onnx`; a JSON file there without it is not ours to trust.
CARD_FORMAT = "keras-mmga onnx export"
# A saved gallery index is `PREFIX.index.npz` + `PREFIX.index.json`: not
# `PREFIX.json`, which is the model card's name when PREFIX is the model's.
INDEX_SUFFIX = ".index"
INDEX_FORMAT = "keras-mmga gallery index"


# -------------------------------------------------------------------- images
def read_image(path):
    """An image file as BGR uint8 `(H, W, 3)` (grey and alpha images are converted).

    Raises `FileNotFoundError` for a missing file and `ValueError` for one
    that is not a readable image.

    Example:
    >>> read_image("query/0001_c1s1_001051_00.jpg").shape
    (128, 64, 3)
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Image not found: {path!r}.")
    # imdecode of the bytes, not imread: works for any path encoding.
    image = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"Cannot decode image {path!r} (not a JPEG/PNG/BMP, or corrupt).")
    return image


def preprocess(image, image_size, color="rgb"):
    """One image → float32 RGB `(H, W, 3)` in [0, 255] at the model's size.

    Resizing is bilinear with half-pixel centres (`cv2.INTER_LINEAR` on float32
    pixels), as the training and evaluation pipelines'
    `tf.image.resize(..., "bilinear")`: identical when shrinking, < 2e-3 grey
    levels apart when enlarging. JPEG files are decoded with libjpeg's accurate
    integer IDCT, identical to `tf.io.decode_jpeg(dct_method="INTEGER_ACCURATE")`;
    TensorFlow's default (fast) IDCT differs by up to ~7 grey levels (mean ~1).
    See `tests/test_deploy.py`.

    Args:
        image: a path, or an `(H, W, 3)` array: uint8, or float in [0, 255].
        image_size: `(H, W)` to resize to.
        color: channel order of an array, `"rgb"` or `"bgr"` (OpenCV's);
            files are always read correctly.

    Example:
    >>> preprocess(cv2.imread("a.jpg"), (384, 128), color="bgr").shape
    (384, 128, 3)
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


def _as_list(images):
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


def _read_json(path, what):
    """The JSON at `path`, or a `ValueError` that names the file and what it should be."""
    try:
        with open(path, "rb") as f:
            return json.loads(f.read().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path!r} is not valid JSON (expected {what}): {err}.") from None


def read_model_card(card_path):
    """The model card at `card_path`, checked to be one `keras_mmga.export` wrote.

    The extractor takes the input layout from the card, so a foreign JSON file
    under the card's name (another tool's, or a gallery index saved with the
    model's prefix by an older version) must be refused, not half-read.

    Raises:
        ValueError: naming the file, if it is not JSON, not a keras-mmga card,
            or has no usable `input.layout` / `input.shape`.
    """
    card = _read_json(card_path, "a keras-mmga model card")
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        found = card.get("format") if isinstance(card, dict) else type(card).__name__
        hint = " (it looks like a gallery index saved under the model's name)" if isinstance(card, dict) and (
            "paths" in card) else ""
        raise ValueError(
            f"{card_path!r} is not a keras-mmga model card (expected \"format\": {CARD_FORMAT!r}, got {found!r})"
            f"{hint}; re-export the model, or remove the file to use the graph's input shape."
        )
    spec = card.get("input")
    if not isinstance(spec, dict) or spec.get("layout") not in ("NHWC", "NCHW") or not (
        isinstance(spec.get("shape"), list) and len(spec["shape"]) == 4
    ):
        raise ValueError(f"{card_path!r}: expected \"input\" with \"layout\" 'NHWC' or 'NCHW' and a 4-D "
                         f"\"shape\"; got {spec!r}.")
    return card


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ----------------------------------------------------------------- extractor
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
    >>> extractor = OnnxFeatureExtractor("exported/mmga.onnx")
    >>> extractor(["a.jpg", "b.jpg"]).shape          # files
    (2, 2048)
    >>> extractor(frame[y0:y1, x0:x1], color="bgr")  # an OpenCV crop
    """

    def __init__(self, onnx_path, providers=None, batch_size=32):
        import onnxruntime as ort

        path = os.fspath(onnx_path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"ONNX model not found: {path!r}.")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}.")
        self.path, self.batch_size = path, int(batch_size)
        try:
            self.session = ort.InferenceSession(path, providers=providers or ["CPUExecutionProvider"])
        except Exception as err:  # ONNX Runtime's own classes (InvalidProtobuf, Fail, ...), all plain Exception
            raise ValueError(f"ONNX Runtime cannot load {path!r}: {err}") from err
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or inputs[0].name != "images" or [o.name for o in outputs] != ["features"]:
            raise ValueError(f"{path!r} is not a keras-mmga export (expected input 'images' and output 'features').")
        if inputs[0].type != "tensor(float)":
            raise ValueError(f"{path!r}: input 'images' must be float32, got {inputs[0].type}.")
        shape = inputs[0].shape
        if len(shape) != 4 or not all(isinstance(d, int) for d in shape[1:]):
            raise ValueError(f"{path!r}: expected input (N, H, W, 3) or (N, 3, H, W) with fixed H, W; got {shape}.")
        card_path = os.path.splitext(path)[0] + ".json"
        self.card = read_model_card(card_path) if os.path.isfile(card_path) else None
        if self.card is None:
            self.layout = "NCHW" if shape[1] == 3 and shape[3] != 3 else "NHWC"
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
        >>> extractor.run(np.zeros((2, 384, 128, 3), np.float32)).shape
        (2, 2048)
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
        return self.session.run(["features"], {"images": np.ascontiguousarray(batch)})[0]

    def preprocess(self, images, color="rgb"):
        """Images (paths or arrays) → the float32 batch `run` takes."""
        batch = np.stack([preprocess(x, self.image_size, color) for x in _as_list(images)])
        return batch.transpose(0, 3, 1, 2) if self.layout == "NCHW" else batch

    def __call__(self, images, color="rgb"):
        """`(N, D)` L2-normalised features.

        Args:
            images: a path, an `(H, W, 3)` array, an `(N, H, W, 3)` array or a
                list of paths / arrays (sizes may differ).
            color: channel order of the arrays, `"rgb"` or `"bgr"`.
        """
        items = _as_list(images)
        if not items:
            raise ValueError("No images given.")
        out = [self.run(self.preprocess(items[i : i + self.batch_size], color))
               for i in range(0, len(items), self.batch_size)]
        return np.concatenate(out)


# --------------------------------------------------------------- the gallery
def _list_images(folder):
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"Gallery folder not found: {folder!r}.")
    return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.lower().endswith(IMAGE_SUFFIXES))


def parse_reid_name(name):
    """`(pid, camid)` of a Market-1501 or DukeMTMC-reID file name (camid 0-based), else `(-1, -1)`."""
    from keras_mmga.data.market import DukeMTMCreID, Market1501

    for reader in (Market1501, DukeMTMCreID):
        try:
            return reader.parse_name(os.path.basename(name))
        except ValueError:
            pass
    return -1, -1


def _index_files(prefix):
    """`(PREFIX.index.npz, PREFIX.index.json)`: a saved index's two files."""
    base = os.fspath(prefix) + INDEX_SUFFIX
    return base + ".npz", base + ".json"


def _read_index_arrays(npz_path):
    """features, pids, camids of a saved index, or a `ValueError` naming the file."""
    try:
        with np.load(npz_path) as z:
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise ValueError("a single array, not an .npz archive")
            missing = {"features", "pids", "camids"} - set(z.files)
            if missing:
                raise ValueError(f"no {sorted(missing)} array(s)")
            return z["features"], z["pids"], z["camids"]
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as err:
        raise ValueError(f"{npz_path!r} is not a keras-mmga gallery index (features, pids, camids): {err}") from None


class GalleryIndex:
    """Gallery features with their paths, pids and camids; saved as `PREFIX.index.npz` + `PREFIX.index.json`.

    pids and camids come from Market-1501 / DukeMTMC-reID file names where
    they parse (camid 0-based), else -1. Distances are Euclidean between
    L2-normalised features (0 = identical, 2 = opposite).

    Args:
        features: `(N, D)` float32, L2-normalised.
        paths, pids, camids: one per row of `features`.
        meta: dict saved with the index (the model it was built with).

    Example:
    >>> index = GalleryIndex.build(extractor, "gallery/")
    >>> index.save("gallery")                      # gallery.index.npz + gallery.index.json
    >>> hits = GalleryIndex.load("gallery").query(extractor("q.jpg"), topk=5)
    >>> hits[0]["path"], hits[0]["distance"]
    """

    def __init__(self, features, paths, pids, camids, meta=None):
        self.features = np.asarray(features, np.float32)
        self.paths = [os.fspath(p) for p in paths]
        self.pids, self.camids = np.asarray(pids, np.int64), np.asarray(camids, np.int64)
        if self.features.ndim != 2:
            raise ValueError(f"features must be (N, D), got shape {self.features.shape}.")
        if not len(self.features) == len(self.paths) == len(self.pids) == len(self.camids):
            raise ValueError("features, paths, pids and camids must have the same length.")
        self.meta = dict(meta or {})
        self.extractor = None

    def __len__(self):
        return len(self.paths)

    @classmethod
    def build(cls, extractor, folder):
        """Extracts features of every image in `folder` (not recursive, sorted by name)."""
        folder = os.fspath(folder)
        paths = _list_images(folder)
        if not paths:
            raise ValueError(f"No images ({', '.join(IMAGE_SUFFIXES)}) in gallery folder {folder!r}.")
        ids = [parse_reid_name(p) for p in paths]
        meta = {"gallery": os.path.abspath(folder), "model": os.path.abspath(extractor.path),
                "model_sha256": _sha256(extractor.path)}
        index = cls(extractor(paths), paths, [p for p, _ in ids], [c for _, c in ids], meta)
        index.extractor = extractor
        return index

    def stale_reason(self, extractor, folder):
        """Why this index does not answer for `extractor` on `folder` (None when it does).

        An index holds the features of one model on one folder's images;
        another model's features are not comparable, and added or removed
        images would be missing or dangling.
        """
        if self.meta.get("model_sha256") != _sha256(extractor.path):
            return "built with another model"
        if self.meta.get("gallery") != os.path.abspath(os.fspath(folder)):
            return f"built from another folder ({self.meta.get('gallery')})"
        if [os.path.basename(p) for p in _list_images(folder)] != sorted(os.path.basename(p) for p in self.paths):
            return "the folder's images changed"
        return None

    @classmethod
    def load_or_build(cls, extractor, folder, prefix=None, on_rebuild=None):
        """The index saved at `prefix` if it answers for `extractor` on `folder`, else a new one.

        Building costs a forward pass per gallery image, so a saved index is
        reused; but only when `stale_reason` finds nothing, since another
        model's features or a changed folder would give wrong answers without
        any error. A new index is saved to `prefix` (when given).

        Args:
            extractor: an `OnnxFeatureExtractor`.
            folder: the gallery folder.
            prefix: where the index is saved (`PREFIX.index.npz` + `.json`);
                None to build without saving.
            on_rebuild: called with the reason (str) when a saved index is
                stale and rebuilt, e.g. to log it.

        Example:
        >>> index = GalleryIndex.load_or_build(extractor, "gallery/", "runs/gallery")
        """
        folder = os.fspath(folder)
        prefix = None if prefix is None else os.fspath(prefix)
        if prefix is not None and all(os.path.isfile(p) for p in _index_files(prefix)):
            index = cls.load(prefix)
            stale = index.stale_reason(extractor, folder)
            if stale is None:
                index.extractor = extractor
                return index
            if on_rebuild is not None:
                on_rebuild(stale)
        index = cls.build(extractor, folder)
        if prefix is not None:
            index.save(prefix)
        return index

    def save(self, prefix):
        """Writes `PREFIX.index.npz` (features, pids, camids) and `PREFIX.index.json` (paths, model).

        The `.index` infix keeps `save("exported/mmga_market")` from
        overwriting the model card `exported/mmga_market.json`.
        """
        npz_path, json_path = _index_files(prefix)
        os.makedirs(os.path.dirname(npz_path) or ".", exist_ok=True)
        np.savez(npz_path, features=self.features, pids=self.pids, camids=self.camids)
        with open(json_path, "w") as f:
            json.dump({"format": INDEX_FORMAT, "paths": self.paths, **self.meta}, f, indent=1)

    @classmethod
    def load(cls, prefix):
        """The index `save(prefix)` wrote; errors name the file and what it should hold."""
        npz_path, json_path = _index_files(prefix)
        for path in (npz_path, json_path):
            if not os.path.isfile(path):
                raise FileNotFoundError(f"Gallery index file not found: {path!r} (save(PREFIX) writes "
                                        f"PREFIX{INDEX_SUFFIX}.npz and PREFIX{INDEX_SUFFIX}.json).")
        meta = _read_json(json_path, "a keras-mmga gallery index")
        if not isinstance(meta, dict) or meta.get("format") != INDEX_FORMAT:
            found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
            raise ValueError(f"{json_path!r} is not a keras-mmga gallery index "
                             f"(expected \"format\": {INDEX_FORMAT!r}, got {found!r}).")
        paths = meta.get("paths")
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise ValueError(f"{json_path!r}: expected \"paths\", a list of image paths.")
        features, pids, camids = _read_index_arrays(npz_path)
        meta = {k: v for k, v in meta.items() if k not in ("format", "paths")}
        try:
            return cls(features, paths, pids, camids, meta)
        except ValueError as err:  # e.g. the .npz and the .json of two different saves
            raise ValueError(f"Gallery index {npz_path!r} + {json_path!r}: {err}") from None

    def query(self, query, topk=10, extractor=None, color="rgb"):
        """The `topk` nearest gallery entries, nearest first.

        Args:
            query: a feature `(D,)` / `(1, D)`, or one image (path or array).
            topk: how many entries (at most the gallery size).
            extractor: turns an image query into a feature (default: the one
                that built this index).
            color: channel order of an array image.

        Returns:
            List of dicts with `path`, `pid`, `camid`, `distance`, `index`.
        """
        if int(topk) < 1:
            raise ValueError(f"topk must be positive, got {topk}.")
        is_feature = isinstance(query, np.ndarray) and (query.ndim == 1 or (query.ndim == 2 and query.shape[0] == 1))
        if is_feature:
            feature = query.astype(np.float32).reshape(-1)
        else:
            extractor = extractor or self.extractor
            if extractor is None:
                raise ValueError("An image query needs an extractor (query(image, extractor=...)).")
            if isinstance(query, np.ndarray) and query.ndim == 4:
                raise ValueError("query takes one image; loop over a batch.")
            feature = extractor(query, color=color)[0]
        if feature.shape[0] != self.features.shape[1]:
            raise ValueError(f"Query feature has {feature.shape[0]} dims, the gallery {self.features.shape[1]}.")
        distances = np.sqrt(np.maximum(np.sum((self.features - feature) ** 2, axis=1), 0.0))
        k = min(int(topk), len(distances))
        nearest = np.argpartition(distances, k - 1)[:k] if k < len(distances) else np.arange(len(distances))
        # Ties (duplicate images) break by gallery order, so results are reproducible.
        order = nearest[np.lexsort((nearest, distances[nearest]))]
        return [{"path": self.paths[i], "pid": int(self.pids[i]), "camid": int(self.camids[i]),
                 "distance": float(distances[i]), "index": int(i)} for i in order]
