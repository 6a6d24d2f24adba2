"""Deployment with ONNX Runtime: a feature extractor and an on-disk gallery index."""

import json
import os

import cv2
import numpy as np

from keras_mmga.data.market import IMAGE_SUFFIXES, Market1501


class OnnxFeatureExtractor:
    """Features from an exported model, for image files or arrays of any size.

    Images are resized to the model's input with bilinear interpolation (the
    training pipeline's `tf.image.resize` bilinear; OpenCV's differs by
    rounding only) and fed as float32 RGB in [0, 255]; normalisation is in the
    graph.

    Args:
        onnx_path: a model written by `keras_mmga.export.export_onnx`.
        batch_size: images per ONNX Runtime call.
        providers: ONNX Runtime execution providers (default: CPU).

    Example:
    >>> extractor = OnnxFeatureExtractor("exported/mmga.onnx")
    >>> feats = extractor(["a.jpg", "b.jpg"])          # (2, 2048)
    >>> feats = extractor(bgr_frames, color="bgr")     # arrays from OpenCV
    """

    def __init__(self, onnx_path, batch_size=32, providers=None):
        import onnxruntime as ort

        path = os.fspath(onnx_path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"ONNX model not found: {path!r}.")
        self.session = ort.InferenceSession(path, providers=providers or ["CPUExecutionProvider"])
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or inputs[0].name != "images":
            raise ValueError(f"{path!r} is not a keras-mmga export (expected one input named 'images').")
        shape = inputs[0].shape
        self.nchw = shape[1] == 3
        self.height, self.width = (shape[2], shape[3]) if self.nchw else (shape[1], shape[2])
        self.batch_size = int(batch_size)

    def _load(self, item, color):
        if isinstance(item, (str, os.PathLike)):
            image = cv2.imread(os.fspath(item), cv2.IMREAD_COLOR)
            if image is None:
                raise FileNotFoundError(f"Cannot read image {os.fspath(item)!r}.")
            color = "bgr"
        else:
            image = np.asarray(item)
            if image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(f"Expected an (H, W, 3) image, got shape {image.shape}.")
            if image.dtype not in (np.uint8, np.float32, np.float64):
                raise ValueError(f"Expected uint8 or float pixels in [0, 255], got {image.dtype}.")
        if color not in ("rgb", "bgr"):
            raise ValueError(f"color must be 'rgb' or 'bgr', got {color!r}.")
        image = cv2.resize(image.astype(np.float32), (self.width, self.height), interpolation=cv2.INTER_LINEAR)
        return image[..., ::-1] if color == "bgr" else image

    def __call__(self, images, color="rgb"):
        """(N, D) L2-normalised features of image paths or arrays (`color` for arrays)."""
        if isinstance(images, (str, os.PathLike)) or (isinstance(images, np.ndarray) and images.ndim == 3):
            images = [images]
        out = []
        for start in range(0, len(images), self.batch_size):
            batch = np.stack([self._load(x, color) for x in images[start : start + self.batch_size]])
            if self.nchw:
                batch = batch.transpose(0, 3, 1, 2)
            out.append(self.session.run(["features"], {"images": np.ascontiguousarray(batch, np.float32)})[0])
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


class GalleryIndex:
    """Gallery features with their paths, pids and camids, saved as `.npz` + `.json`.

    Example:
    >>> index = GalleryIndex.build(extractor, "gallery_dir/")
    >>> index.save("gallery.index")
    >>> GalleryIndex.load("gallery.index").query(extractor("q.jpg"), topk=5)
    """

    def __init__(self, features, paths, pids, camids):
        self.features = np.asarray(features, np.float32)
        self.paths, self.pids, self.camids = list(paths), np.asarray(pids), np.asarray(camids)
        if not (len(self.features) == len(self.paths) == len(self.pids) == len(self.camids)):
            raise ValueError("features, paths, pids and camids must have the same length.")

    @classmethod
    def build(cls, extractor, folder):
        folder = os.fspath(folder)
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"Gallery folder not found: {folder!r}.")
        paths = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.lower().endswith(IMAGE_SUFFIXES))
        if not paths:
            raise ValueError(f"No images in gallery folder {folder!r}.")
        pids, camids = [], []
        for p in paths:
            try:  # Market-style names carry identity and camera
                pid, cam = Market1501.parse_name(os.path.basename(p))
            except ValueError:
                pid, cam = -1, -1
            pids.append(pid)
            camids.append(cam)
        return cls(extractor(paths), paths, pids, camids)

    def save(self, path):
        np.savez(os.fspath(path) + ".npz", features=self.features, pids=self.pids, camids=self.camids)
        with open(os.fspath(path) + ".json", "w") as f:
            json.dump({"paths": self.paths}, f)

    @classmethod
    def load(cls, path):
        with np.load(os.fspath(path) + ".npz") as z:
            features, pids, camids = z["features"], z["pids"], z["camids"]
        with open(os.fspath(path) + ".json") as f:
            paths = json.load(f)["paths"]
        return cls(features, paths, pids, camids)

    def query(self, feature, topk=10):
        """Top-k gallery entries for one feature: list of dicts (path, pid, camid, distance)."""
        feature = np.asarray(feature, np.float32).reshape(-1)
        if feature.shape[0] != self.features.shape[1]:
            raise ValueError(f"Query feature has {feature.shape[0]} dims, the gallery {self.features.shape[1]}.")
        distances = np.sum((self.features - feature) ** 2, axis=1)
        order = np.argsort(distances, kind="stable")[:topk]
        return [{"path": self.paths[i], "pid": int(self.pids[i]), "camid": int(self.camids[i]),
                 "distance": float(distances[i])} for i in order]
