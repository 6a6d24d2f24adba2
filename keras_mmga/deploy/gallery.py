"""`GalleryIndex`: gallery features with their paths, pids and camids, searched by NumPy or FAISS, saved on disk.

Example:
```python
from keras_mmga.deploy import GalleryIndex
index = GalleryIndex.build(extractor, "Market-1501/bounding_box_test")
index.save("market_gallery")          # market_gallery.index.npz + market_gallery.index.json
index.query("Market-1501/query/0001_c1s1_001051_00.jpg", topk=5, extractor=extractor)[0]["pid"]
```
"""

import json
import os

import numpy as np

from keras_mmga.deploy.index_files import INDEX_FORMAT, INDEX_SUFFIX, index_files, read_index_arrays, read_index_meta
from keras_mmga.deploy.search_engines import FaissBackend, NumpyBackend, append_rows, make_backend
from keras_mmga.image_io import IMAGE_SUFFIXES, list_images, parse_reid_name, sha256
from keras_mmga.progress import Progress


def _check_unit_length(features, what="features"):
    # FAISS ranks by inner product; that equals Euclidean ranking only for unit vectors.
    if len(features):
        norms = np.linalg.norm(features, axis=1)
        worst = float(np.max(np.abs(norms - 1.0)))
        if not worst <= 1e-3:
            raise ValueError(
                f"backend='faiss' searches by inner product and needs L2-normalised {what}; "
                f"found a norm of {norms[np.argmax(np.abs(norms - 1.0))]:.4g} (the extractor's "
                "features are normalised; normalise your own, or use backend='numpy')."
            )


def _model_sha256(extractor):
    # OnnxFeatureExtractor hashes its file once (hundreds of MB); any extractor with a `path` works.
    return getattr(extractor, "sha256", None) or sha256(extractor.path)


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
    ```python
    index = GalleryIndex.build(extractor, "gallery/", backend="faiss", faiss_index="HNSW32", efSearch=128)
    index.add(extractor(new_paths), new_paths)   # more cameras, no rebuild
    index.save("gallery")                        # gallery.index.{npz,json,faiss}
    hits = GalleryIndex.load("gallery").query(extractor("q.jpg"), topk=5)
    hits[0]["path"], hits[0]["distance"]
    ```
    """

    def __init__(
        self,
        features,
        paths,
        pids,
        camids,
        meta=None,
        backend="numpy",
        faiss_index="Flat",
        nprobe=None,
        efSearch=None,
        efConstruction=None,
        _search=None,
    ):
        features = np.asarray(features, np.float32)
        if features.ndim != 2:
            raise ValueError(f"features must be (N, D), got shape {features.shape}.")
        self.paths, self._pids, self._camids = [], np.empty(0, np.int64), np.empty(0, np.int64)
        self.meta = dict(meta or {})
        self.extractor = None
        if _search is not None:  # `load`: a FAISS index that already holds the features
            self._search = _search
            self._append_rows(paths, pids, camids, len(_search))
            return
        self._search = make_backend(
            backend, features.shape[1], faiss_index, nprobe=nprobe, efSearch=efSearch, efConstruction=efConstruction
        )
        self.add(features, paths, pids, camids)

    def __len__(self):
        return len(self.paths)

    @property
    def pids(self):
        """`(N,)` int64 identities (a view of a buffer that grows by doubling, like the features)."""
        return self._pids[: len(self.paths)]

    @property
    def camids(self):
        """`(N,)` int64 cameras."""
        return self._camids[: len(self.paths)]

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
        ```python
        index.set_search_knobs(nprobe=32)
        ```
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
            raise ValueError(
                f"features, paths, pids and camids must have the same length "
                f"(got {n}, {len(paths)}, {len(pids)}, {len(camids)})."
            )
        self._pids = append_rows(self._pids, len(self.paths), pids)
        self._camids = append_rows(self._camids, len(self.paths), camids)
        self.paths += paths

    def add(self, features, paths, pids=None, camids=None):
        """Adds gallery entries (one per feature row) without rebuilding what is there.

        Args:
            features: `(n, D)` L2-normalised features.
            paths: their image paths.
            pids, camids: their ids; parsed from the file names when None.

        Example:
        ```python
        index.add(extractor(paths), paths)
        ```
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
            raise ValueError(
                f"features, paths, pids and camids must have the same length "
                f"(got {len(features)}, {n_paths}, {n_pids}, {n_camids})."
            )
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
        meta = {
            "gallery": os.path.abspath(folder),
            "model": os.path.abspath(extractor.path),
            "model_sha256": _model_sha256(extractor),
        }
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
        if self.meta.get("model_sha256") != _model_sha256(extractor):
            return "built with another model"
        if self.meta.get("gallery") != os.path.abspath(os.fspath(folder)):
            return f"built from another folder ({self.meta.get('gallery')})"
        if [os.path.basename(p) for p in list_images(folder, "Gallery folder")] != sorted(
            os.path.basename(p) for p in self.paths
        ):
            return "the folder's images changed"
        if search:
            wanted = make_backend(
                search.get("backend", "numpy"), self._search.dim, **{k: v for k, v in search.items() if k != "backend"}
            ).config()
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
        ```python
        index = GalleryIndex.load_or_build(extractor, "gallery/", "runs/gallery")
        ```
        """
        folder = os.fspath(folder)
        prefix = None if prefix is None else os.fspath(prefix)
        if prefix is not None and all(os.path.isfile(p) for p in index_files(prefix)[:2]):
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
        npz_path, json_path, faiss_path = index_files(prefix)
        os.makedirs(os.path.dirname(npz_path) or ".", exist_ok=True)
        arrays = {"pids": self.pids, "camids": self.camids}
        if isinstance(self._search, NumpyBackend):
            arrays["features"] = self._search.features
        else:
            self._search.save(faiss_path)
        np.savez(npz_path, **arrays)
        with open(json_path, "w") as f:
            json.dump(
                {"format": INDEX_FORMAT, "search": self.search_config, "paths": self.paths, **self.meta}, f, indent=1
            )

    @classmethod
    def load(cls, prefix, **knobs):
        """The index `save(prefix)` wrote; errors name the file and what it should hold.

        Args:
            prefix: as given to `save`.
            **knobs: FAISS search knobs to change (`nprobe`, `efSearch`).
        """
        npz_path, json_path, faiss_path = index_files(prefix)
        for path in (npz_path, json_path):
            if not os.path.isfile(path):
                raise FileNotFoundError(
                    f"Gallery index file not found: {path!r} (save(PREFIX) writes "
                    f"PREFIX{INDEX_SUFFIX}.npz and PREFIX{INDEX_SUFFIX}.json)."
                )
        paths, search, meta = read_index_meta(json_path)
        is_faiss = search["backend"] == "faiss"
        features, pids, camids = read_index_arrays(npz_path, need_features=not is_faiss)
        try:
            if not is_faiss:
                if knobs:
                    raise ValueError(f"{sorted(knobs)} apply to backend='faiss'; this index is NumPy's")
                return cls(features, paths, pids, camids, meta)
            if not os.path.isfile(faiss_path):
                raise FileNotFoundError(
                    f"Gallery index file not found: {faiss_path!r} (a FAISS index is saved "
                    f"as PREFIX{INDEX_SUFFIX}.faiss beside the .npz and .json)."
                )
            settings = {k: v for k, v in search.items() if k not in ("backend", "faiss_index")}
            backend = FaissBackend.load(faiss_path, search.get("faiss_index", "Flat"), **{**settings, **knobs})
            if len(backend) != len(paths):
                raise ValueError(
                    f"{faiss_path!r} holds {len(backend)} features for {len(paths)} paths "
                    "(files of two different saves)"
                )
            return cls(np.empty((0, backend.dim), np.float32), paths, pids, camids, meta, _search=backend)
        except ValueError as err:  # e.g. the .npz and the .json of two different saves
            raise ValueError(f"Gallery index {npz_path!r} + {json_path!r}: {err}") from None

    def search(self, queries, topk=10):
        """Nearest `topk` entries of each query feature: `(distances, rows)`, `(Q, k)` each, nearest first.

        `rows` index `paths` / `pids` / `camids`; an approximate FAISS index may
        return -1 (distance inf) where it found fewer than k.

        Example:
        ```python
        distances, rows = index.search(extractor(query_paths), topk=10)
        ```
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

    def _check_extractor(self, extractor):
        # Another model's features are not comparable with this index's: a wrong answer, not an error,
        # unless refused here.
        built = self.meta.get("model_sha256")
        path = getattr(extractor, "path", None)
        if built is None or path is None:
            return
        digest = _model_sha256(extractor)
        if digest != built:
            raise ValueError(
                f"The extractor's model {path!r} (sha256 {digest[:12]}...) is not the model that built this "
                f"index ({self.meta.get('model', 'unknown file')!s}, sha256 {built[:12]}...): their features are "
                "not comparable. Query with the index's model, or rebuild the index with this one."
            )

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
            self._check_extractor(extractor)
            feature = extractor(query, color=color)[0]
        distances, rows = self.search(feature, topk)
        return [
            {
                "path": self.paths[i],
                "pid": int(self.pids[i]),
                "camid": int(self.camids[i]),
                "distance": float(d),
                "index": int(i),
            }
            for d, i in zip(distances[0], rows[0])
            if i >= 0
        ]
