"""Deployment with ONNX Runtime: a feature extractor and an on-disk gallery index.

This module runs on ONNX Runtime, OpenCV and NumPy alone (TensorFlow and Keras
are neither needed nor imported): `pip install --no-deps keras-mmga` plus
`requirements-deploy.txt` is a complete deploy install. FAISS (`faiss-cpu`)
is optional, for `GalleryIndex(..., backend="faiss")`.

Example:
>>> from keras_mmga.deploy import GalleryIndex, OnnxFeatureExtractor
>>> extractor = OnnxFeatureExtractor("exported/mmga_market.onnx")
>>> index = GalleryIndex.build(extractor, "Market-1501/bounding_box_test")
>>> index.save("market_gallery")          # market_gallery.index.npz + market_gallery.index.json
>>> index.query("Market-1501/query/0001_c1s1_001051_00.jpg", topk=5, extractor=extractor)[0]["pid"]
1
"""

import json
import os
import zipfile

import cv2
import numpy as np

from keras_mmga.image_io import IMAGE_SUFFIXES, list_images, parse_reid_name, read_image, sha256
from keras_mmga.progress import Progress
from keras_mmga.search_backends import FaissBackend, NumpyBackend, make_backend

__all__ = ["CARD_FORMAT", "GalleryIndex", "IMAGE_SUFFIXES", "OnnxFeatureExtractor", "parse_reid_name", "preprocess",
           "read_image", "read_model_card"]

# The "format" of the model card `NAME.json` that `keras_mmga.export` writes
# beside `NAME.onnx`; a JSON file there without it is not ours to trust.
CARD_FORMAT = "keras-mmga onnx export"
# A saved gallery index is `PREFIX.index.npz` + `PREFIX.index.json` (+
# `PREFIX.index.faiss` for the FAISS backend): not `PREFIX.json`, which is the
# model card's name when PREFIX is the model's.
INDEX_SUFFIX = ".index"
INDEX_FORMAT = "keras-mmga gallery index"


# -------------------------------------------------------------------- images
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
def _index_files(prefix):
    """`(PREFIX.index.npz, PREFIX.index.json, PREFIX.index.faiss)`: a saved index's files."""
    base = os.fspath(prefix) + INDEX_SUFFIX
    return base + ".npz", base + ".json", base + ".faiss"


def _read_index_arrays(npz_path, need_features=True):
    """features (None when not needed), pids, camids of a saved index, or a `ValueError` naming the file."""
    try:
        with np.load(npz_path) as z:
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise ValueError("a single array, not an .npz archive")
            missing = ({"features"} if need_features else set()) | {"pids", "camids"}
            missing -= set(z.files)
            if missing:
                raise ValueError(f"no {sorted(missing)} array(s)")
            return (z["features"] if need_features else None), z["pids"], z["camids"]
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as err:
        raise ValueError(f"{npz_path!r} is not a keras-mmga gallery index (features, pids, camids): {err}") from None


def _check_unit_length(features, what="features"):
    # FAISS ranks by inner product; that equals Euclidean ranking only for unit vectors.
    if len(features):
        norms = np.linalg.norm(features, axis=1)
        worst = float(np.max(np.abs(norms - 1.0)))
        if not worst <= 1e-3:
            raise ValueError(f"backend='faiss' searches by inner product and needs L2-normalised {what}; "
                             f"found a norm of {norms[np.argmax(np.abs(norms - 1.0))]:.4g} (the extractor's "
                             "features are normalised; normalise your own, or use backend='numpy').")


class GalleryIndex:
    """Gallery features with their paths, pids and camids, searchable by NumPy or FAISS.

    Saved as `PREFIX.index.npz` (pids, camids; the features too for NumPy) +
    `PREFIX.index.json` (paths, the model, the search settings), and
    `PREFIX.index.faiss` for FAISS. pids and camids come from Market-1501 /
    DukeMTMC-reID file names where they parse (camid 0-based), else -1.
    Distances are Euclidean between L2-normalised features (0 = identical,
    2 = opposite), whatever the backend.

    Args:
        features: `(N, D)` float32, L2-normalised.
        paths, pids, camids: one per row of `features`.
        meta: dict saved with the index (the model it was built with).
        backend: `"numpy"` (exact brute force; default) or `"faiss"`
            (`pip install faiss-cpu`).
        faiss_index: FAISS index-factory string: `"Flat"` (exact inner
            product, default), `"IVF{nlist},Flat"`, `"IVF{nlist},SQ8"`,
            `"HNSW{M}"`, ... An index that needs training trains on `features`.
        nprobe, efSearch, efConstruction: FAISS's knobs (IVF lists probed;
            HNSW search / construction candidate lists).

    Example:
    >>> index = GalleryIndex.build(extractor, "gallery/", backend="faiss", faiss_index="HNSW32", efSearch=128)
    >>> index.add(extractor(new_paths), new_paths)   # more cameras, no rebuild
    >>> index.save("gallery")                        # gallery.index.{npz,json,faiss}
    >>> hits = GalleryIndex.load("gallery").query(extractor("q.jpg"), topk=5)
    >>> hits[0]["path"], hits[0]["distance"]
    """

    def __init__(self, features, paths, pids, camids, meta=None, backend="numpy", faiss_index="Flat", nprobe=None,
                 efSearch=None, efConstruction=None, _search=None):
        features = np.asarray(features, np.float32)
        if features.ndim != 2:
            raise ValueError(f"features must be (N, D), got shape {features.shape}.")
        self.paths, self.pids, self.camids = [], np.empty(0, np.int64), np.empty(0, np.int64)
        self.meta = dict(meta or {})
        self.extractor = None
        if _search is not None:  # `load`: a FAISS index that already holds the features
            self._search = _search
            self._append_rows(paths, pids, camids, len(_search))
            return
        self._search = make_backend(backend, features.shape[1], faiss_index, nprobe=nprobe, efSearch=efSearch,
                                    efConstruction=efConstruction)
        self.add(features, paths, pids, camids)

    def __len__(self):
        return len(self.paths)

    @property
    def backend(self):
        """`"numpy"` or `"faiss"`."""
        return self._search.name

    @property
    def search_config(self):
        """The backend and its FAISS settings, as saved in `PREFIX.index.json`."""
        return self._search.config()

    def set_search_knobs(self, **knobs):
        """Changes FAISS search knobs of a built index (`nprobe`, `efSearch`), e.g. to trade recall for speed.

        Example:
        >>> index.set_search_knobs(nprobe=32)
        """
        if not isinstance(self._search, FaissBackend):
            raise ValueError(f"{sorted(knobs)} apply to backend='faiss'; this index is NumPy's.")
        for name, value in knobs.items():
            if name not in ("nprobe", "efSearch"):
                raise ValueError(f"Unknown search knob {name!r}; expected 'nprobe' or 'efSearch'.")
            self._search.set_knob(name, value)

    @property
    def features(self):
        """`(N, D)` float32 gallery features (for FAISS SQ / PQ indexes: their decoded approximation)."""
        return self._search.all_features()

    def _append_rows(self, paths, pids, camids, n):
        paths = [os.fspath(p) for p in paths]
        pids, camids = np.asarray(pids, np.int64).reshape(-1), np.asarray(camids, np.int64).reshape(-1)
        if not n == len(paths) == len(pids) == len(camids):
            raise ValueError(f"features, paths, pids and camids must have the same length "
                             f"(got {n}, {len(paths)}, {len(pids)}, {len(camids)}).")
        self.paths += paths
        self.pids, self.camids = np.concatenate([self.pids, pids]), np.concatenate([self.camids, camids])

    def add(self, features, paths, pids=None, camids=None):
        """Adds gallery entries (one per feature row) without rebuilding what is there.

        Args:
            features: `(n, D)` L2-normalised features.
            paths: their image paths.
            pids, camids: their ids; parsed from the file names when None.

        Example:
        >>> index.add(extractor(paths), paths)
        """
        features = np.asarray(features, np.float32)
        paths = [os.fspath(p) for p in paths]
        if pids is None or camids is None:
            parsed = [parse_reid_name(p) for p in paths]
            pids = [p for p, _ in parsed] if pids is None else pids
            camids = [c for _, c in parsed] if camids is None else camids
        if features.ndim != 2 or features.shape[1] != self._search.dim:
            raise ValueError(f"features must be (n, {self._search.dim}), got shape {features.shape}.")
        if isinstance(self._search, FaissBackend):
            _check_unit_length(features)
        n_paths, n_pids, n_camids = len(paths), len(np.asarray(pids).reshape(-1)), len(np.asarray(camids).reshape(-1))
        if not len(features) == n_paths == n_pids == n_camids:  # checked before the backend takes any rows
            raise ValueError(f"features, paths, pids and camids must have the same length "
                             f"(got {len(features)}, {n_paths}, {n_pids}, {n_camids}).")
        if len(features):
            self._search.add(features)
        self._append_rows(paths, pids, camids, len(features))

    @classmethod
    def build(cls, extractor, folder, verbose=True, **search):
        """Extracts features of every image in `folder` (not recursive, sorted by name), with progress on stderr.

        Args:
            extractor: an `OnnxFeatureExtractor`.
            folder: the gallery folder.
            verbose: print progress (images, images/s, time left) to stderr.
            **search: `backend`, `faiss_index`, `nprobe`, `efSearch`, `efConstruction` (see the class).
        """
        folder = os.fspath(folder)
        paths = list_images(folder, "Gallery folder")
        if not paths:
            raise ValueError(f"No images ({', '.join(IMAGE_SUFFIXES)}) in gallery folder {folder!r}.")
        ids = [parse_reid_name(p) for p in paths]
        meta = {"gallery": os.path.abspath(folder), "model": os.path.abspath(extractor.path),
                "model_sha256": sha256(extractor.path)}
        features = []
        with Progress(len(paths), "images", label="gallery features", verbose=verbose) as bar:
            for start in range(0, len(paths), extractor.batch_size):
                batch = paths[start : start + extractor.batch_size]
                features.append(extractor(batch))
                bar.update(len(batch))
        index = cls(np.concatenate(features), paths, [p for p, _ in ids], [c for _, c in ids], meta, **search)
        index.extractor = extractor
        return index

    def stale_reason(self, extractor, folder, **search):
        """Why this index does not answer for `extractor` on `folder` (None when it does).

        An index holds the features of one model on one folder's images;
        another model's features are not comparable, and added or removed
        images would be missing or dangling. With `search` settings (as
        `build` takes), an index saved with other ones is also stale.
        """
        if self.meta.get("model_sha256") != sha256(extractor.path):
            return "built with another model"
        if self.meta.get("gallery") != os.path.abspath(os.fspath(folder)):
            return f"built from another folder ({self.meta.get('gallery')})"
        if [os.path.basename(p) for p in list_images(folder, "Gallery folder")] != sorted(
                os.path.basename(p) for p in self.paths):
            return "the folder's images changed"
        if search:
            wanted = make_backend(search.get("backend", "numpy"), self._search.dim,
                                  **{k: v for k, v in search.items() if k != "backend"}).config()
            if wanted != self.search_config:
                return f"saved with search settings {self.search_config}, asked for {wanted}"
        return None

    @classmethod
    def load_or_build(cls, extractor, folder, prefix=None, on_rebuild=None, verbose=True, **search):
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
            verbose: progress while building.
            **search: `backend`, `faiss_index`, `nprobe`, `efSearch`,
                `efConstruction` (see the class).

        Example:
        >>> index = GalleryIndex.load_or_build(extractor, "gallery/", "runs/gallery")
        """
        folder = os.fspath(folder)
        prefix = None if prefix is None else os.fspath(prefix)
        if prefix is not None and all(os.path.isfile(p) for p in _index_files(prefix)[:2]):
            index = cls.load(prefix)
            stale = index.stale_reason(extractor, folder, **search)
            if stale is None:
                index.extractor = extractor
                return index
            if on_rebuild is not None:
                on_rebuild(stale)
        index = cls.build(extractor, folder, verbose=verbose, **search)
        if prefix is not None:
            index.save(prefix)
        return index

    def save(self, prefix):
        """Writes `PREFIX.index.npz` (pids, camids; features for NumPy), `PREFIX.index.json` (paths, model,
        search settings) and, for FAISS, `PREFIX.index.faiss`.

        The `.index` infix keeps `save("exported/mmga_market")` from
        overwriting the model card `exported/mmga_market.json`.
        """
        npz_path, json_path, faiss_path = _index_files(prefix)
        os.makedirs(os.path.dirname(npz_path) or ".", exist_ok=True)
        arrays = {"pids": self.pids, "camids": self.camids}
        if isinstance(self._search, NumpyBackend):
            arrays["features"] = self._search.features
        else:
            self._search.save(faiss_path)
        np.savez(npz_path, **arrays)
        with open(json_path, "w") as f:
            json.dump({"format": INDEX_FORMAT, "search": self.search_config, "paths": self.paths, **self.meta}, f, indent=1)

    @classmethod
    def load(cls, prefix, **knobs):
        """The index `save(prefix)` wrote; errors name the file and what it should hold.

        Args:
            prefix: as given to `save`.
            **knobs: FAISS search knobs to change (`nprobe`, `efSearch`).
        """
        npz_path, json_path, faiss_path = _index_files(prefix)
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
        search = meta.get("search", {"backend": "numpy"})
        if not isinstance(search, dict) or search.get("backend") not in ("numpy", "faiss"):
            raise ValueError(f"{json_path!r}: expected \"search\" with \"backend\" 'numpy' or 'faiss', got {search!r}.")
        meta = {k: v for k, v in meta.items() if k not in ("format", "paths", "search")}
        is_faiss = search["backend"] == "faiss"
        features, pids, camids = _read_index_arrays(npz_path, need_features=not is_faiss)
        try:
            if not is_faiss:
                if knobs:
                    raise ValueError(f"{sorted(knobs)} apply to backend='faiss'; this index is NumPy's")
                return cls(features, paths, pids, camids, meta)
            if not os.path.isfile(faiss_path):
                raise FileNotFoundError(f"Gallery index file not found: {faiss_path!r} (a FAISS index is saved "
                                        f"as PREFIX{INDEX_SUFFIX}.faiss beside the .npz and .json).")
            settings = {k: v for k, v in search.items() if k not in ("backend", "faiss_index")}
            backend = FaissBackend.load(faiss_path, search.get("faiss_index", "Flat"), **{**settings, **knobs})
            if len(backend) != len(paths):
                raise ValueError(f"{faiss_path!r} holds {len(backend)} features for {len(paths)} paths "
                                 "(files of two different saves)")
            return cls(np.empty((0, backend.dim), np.float32), paths, pids, camids, meta, _search=backend)
        except ValueError as err:  # e.g. the .npz and the .json of two different saves
            raise ValueError(f"Gallery index {npz_path!r} + {json_path!r}: {err}") from None

    def search(self, queries, topk=10):
        """Nearest `topk` entries of each query feature: `(distances, rows)`, `(Q, k)` each, nearest first.

        `rows` index `paths` / `pids` / `camids`; an approximate FAISS index may
        return -1 (distance inf) where it found fewer than k.

        Example:
        >>> distances, rows = index.search(extractor(query_paths), topk=10)
        """
        if int(topk) < 1:
            raise ValueError(f"topk must be positive, got {topk}.")
        queries = np.asarray(queries, np.float32)
        if queries.ndim == 1:
            queries = queries[None]
        if queries.ndim != 2 or queries.shape[1] != self._search.dim:
            got = queries.shape[-1] if queries.ndim else 0
            raise ValueError(f"Query feature has {got} dims, the gallery {self._search.dim}.")
        if isinstance(self._search, FaissBackend):
            _check_unit_length(queries, "queries")
        return self._search.search(queries, topk)

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
        distances, rows = self.search(feature, topk)
        return [{"path": self.paths[i], "pid": int(self.pids[i]), "camid": int(self.camids[i]),
                 "distance": float(d), "index": int(i)} for d, i in zip(distances[0], rows[0]) if i >= 0]
