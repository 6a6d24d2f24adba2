"""Nearest-neighbour search behind `GalleryIndex`: brute force in NumPy, or FAISS.

Both answer the same question, the `k` gallery rows nearest a query in
Euclidean distance, and return the distances (not similarities) so results
read alike. NumPy computes the distances directly (exact to the last bit,
right for Market-1501-sized galleries). FAISS (`pip install faiss-cpu`, an
optional dependency) searches by inner product on the L2-normalised features,
`distance = sqrt(2 - 2 * similarity)`, exactly (`"Flat"`) or approximately
(any FAISS index-factory string, e.g. `"IVF1024,SQ8"` or `"HNSW32"`), with the
search knobs under FAISS's own names (`nprobe` for IVF, `efSearch` /
`efConstruction` for HNSW).

Example:
```python
backend = make_backend("faiss", 2048, faiss_index="IVF1024,Flat", nprobe=16)
backend.add(features)          # an IVF index trains on its first add
distances, rows = backend.search(queries, k=10)
```
"""

import os

import numpy as np

BACKENDS = ("numpy", "faiss")
# Search-time knobs (FAISS ParameterSpace names) and the one set before add.
FAISS_SEARCH_KNOBS = ("nprobe", "efSearch")
FAISS_BUILD_KNOBS = ("efConstruction",)


def import_faiss():
    """The `faiss` module, or an `ImportError` saying how to install it."""
    try:
        import faiss
    except ImportError as err:
        raise ImportError(
            "backend='faiss' needs the faiss package: pip install faiss-cpu "
            "(or pip install 'keras-mmga[faiss]'); backend='numpy' needs nothing extra."
        ) from err
    return faiss


def _as_rows(features, dim, what="features"):
    features = np.asarray(features)
    if features.ndim != 2 or features.shape[1] != dim:
        raise ValueError(f"{what} must be (N, {dim}), got shape {features.shape}.")
    return np.ascontiguousarray(features, np.float32)


class NumpyBackend:
    """Exact search by brute force: all distances of a query, then the `k` smallest.

    Args:
        dim: feature dimension.
    """

    name = "numpy"

    def __init__(self, dim):
        self.dim = int(dim)
        self.features = np.empty((0, self.dim), np.float32)

    def __len__(self):
        return len(self.features)

    def config(self):
        return {"backend": self.name}

    def add(self, features):
        self.features = np.concatenate([self.features, _as_rows(features, self.dim)])

    def search(self, queries, k):
        """`(distances, rows)`, each `(Q, k')` with k' = min(k, N); nearest first, ties by row."""
        queries = _as_rows(queries, self.dim, "queries")
        k = min(int(k), len(self.features))
        distances, rows = np.empty((len(queries), k), np.float32), np.empty((len(queries), k), np.int64)
        for q, query in enumerate(queries):
            # Differences, not |a|^2 + |b|^2 - 2ab: a self-match is 0, not ~1e-4 of rounding.
            d = np.sqrt(np.maximum(np.sum((self.features - query) ** 2, axis=1), 0.0))
            nearest = np.argpartition(d, k - 1)[:k] if k < len(d) else np.arange(len(d))
            order = nearest[np.lexsort((nearest, d[nearest]))]
            distances[q], rows[q] = d[order], order
        return distances, rows

    def all_features(self):
        return self.features

    def save(self, path):  # the features go in the .npz beside it (GalleryIndex.save)
        pass


class FaissBackend:
    """FAISS search by inner product on L2-normalised features.

    Args:
        dim: feature dimension.
        faiss_index: a FAISS index-factory string: `"Flat"` (exact),
            `"IVF{nlist},Flat"`, `"IVF{nlist},SQ8"`, `"HNSW{M}"`, ...
            Indexes that need training (IVF, SQ, PQ) train on the first `add`.
        nprobe: IVF lists visited per query (FAISS's default is 1).
        efSearch: HNSW candidate list size at search time.
        efConstruction: HNSW candidate list size while adding.
        index: an existing FAISS index (from `load`) instead of a new one.
    """

    name = "faiss"

    def __init__(self, dim, faiss_index="Flat", nprobe=None, efSearch=None, efConstruction=None, index=None):
        faiss = import_faiss()
        self.dim, self.faiss_index = int(dim), str(faiss_index)
        if index is None:
            try:
                index = faiss.index_factory(self.dim, self.faiss_index, faiss.METRIC_INNER_PRODUCT)
            except RuntimeError as err:
                raise ValueError(f"faiss_index {self.faiss_index!r} is not a FAISS index-factory string "
                                 f"(e.g. 'Flat', 'IVF1024,Flat', 'IVF1024,SQ8', 'HNSW32'): "
                                 f"{str(err).splitlines()[-1]}") from None
        if index.d != self.dim or index.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise ValueError(f"Expected a {self.dim}-d inner-product FAISS index, got d={index.d}, "
                             f"metric {index.metric_type}.")
        self.index = index
        self.knobs = {}
        for name, value in (("nprobe", nprobe), ("efSearch", efSearch), ("efConstruction", efConstruction)):
            if value is not None:
                self.set_knob(name, value)

    def set_knob(self, name, value):
        """Sets a FAISS parameter (`nprobe`, `efSearch`, `efConstruction`); an error if this index has none."""
        faiss = import_faiss()
        if name not in FAISS_SEARCH_KNOBS + FAISS_BUILD_KNOBS:
            raise ValueError(f"Unknown FAISS knob {name!r}; expected one of {FAISS_SEARCH_KNOBS + FAISS_BUILD_KNOBS}.")
        if int(value) < 1:
            raise ValueError(f"{name} must be positive, got {value}.")
        try:
            faiss.ParameterSpace().set_index_parameter(self.index, name, int(value))
        except RuntimeError:
            owner = "IVF" if name == "nprobe" else "HNSW"
            raise ValueError(f"{name} applies to {owner} indexes; faiss_index {self.faiss_index!r} has none.") from None
        self.knobs[name] = int(value)

    def __len__(self):
        return int(self.index.ntotal)

    def config(self):
        return {"backend": self.name, "faiss_index": self.faiss_index, **self.knobs}

    def add(self, features):
        features = _as_rows(features, self.dim)
        if not self.index.is_trained:
            try:
                self.index.train(features)
            except RuntimeError as err:
                raise ValueError(f"faiss_index {self.faiss_index!r} trains on the first features added and needs "
                                 f"more than {len(features)}: {str(err).splitlines()[-1].split(': ')[-1]} "
                                 "(add more at first, use a smaller nlist, or 'Flat').") from None
        self.index.add(features)

    def search(self, queries, k):
        """`(distances, rows)`, each `(Q, k')` with k' = min(k, N); rows are -1 where an
        approximate index found fewer than k' (distance inf)."""
        queries = _as_rows(queries, self.dim, "queries")
        k = min(int(k), len(self))
        similarity, rows = self.index.search(queries, k)
        distances = np.sqrt(np.maximum(2.0 - 2.0 * similarity, 0.0)).astype(np.float32)
        distances[rows < 0] = np.inf
        return distances, rows.astype(np.int64)

    def all_features(self):
        """The stored features (exact for Flat / IVF-Flat / HNSW-Flat, decoded for SQ / PQ)."""
        faiss = import_faiss()
        try:
            faiss.extract_index_ivf(self.index).make_direct_map()
        except RuntimeError:  # not an IVF index: reconstruct works as is
            pass
        return self.index.reconstruct_n(0, len(self))

    def save(self, path):
        import_faiss().write_index(self.index, os.fspath(path))

    @classmethod
    def load(cls, path, faiss_index, **knobs):
        faiss = import_faiss()
        try:
            index = faiss.read_index(os.fspath(path))
        except RuntimeError as err:
            raise ValueError(f"{os.fspath(path)!r} is not a FAISS index: {str(err).splitlines()[-1]}") from None
        backend = cls(index.d, faiss_index, index=index, **{k: v for k, v in knobs.items() if k in FAISS_SEARCH_KNOBS})
        # Build-time knobs acted when the index was built: recorded, not set again.
        backend.knobs.update({k: int(v) for k, v in knobs.items() if k in FAISS_BUILD_KNOBS and v is not None})
        return backend


def make_backend(backend, dim, faiss_index="Flat", **knobs):
    """A new, empty `NumpyBackend` or `FaissBackend`; FAISS options given to numpy are an error."""
    if backend == "numpy":
        given = {k: v for k, v in knobs.items() if v is not None}
        if given or faiss_index != "Flat":
            raise ValueError(f"backend='numpy' is exact brute force; {sorted(given) or ['faiss_index']} "
                             "need backend='faiss'.")
        return NumpyBackend(dim)
    if backend == "faiss":
        return FaissBackend(dim, faiss_index, **knobs)
    raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}.")
