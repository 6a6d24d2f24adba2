"""Nearest-neighbour search behind `GalleryIndex`: brute force in NumPy, or FAISS.

Both answer the same question, the `k` gallery rows nearest a query in
Euclidean distance, and return the distances (not similarities) so results
read alike. NumPy is exact (the top k of a float64 brute force, ties by row)
at matrix-product speed: blocked float32 BLAS products pick candidates, float64
differences rank them (`NumpyBackend`). FAISS (`pip install faiss-cpu`, an
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
# Exact search blocks: a 512 x 8,192 float32 block of scores is 16 MB.
CHUNK_ROWS = 8192
QUERY_BATCH = 512


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


def append_rows(buffer, n, rows):
    """`buffer` with `rows` written after its first `n` rows, reallocated (doubling) only when full.

    A run of small appends then copies each row O(1) times on average instead
    of the whole array per call (`np.concatenate`).
    """
    rows = np.asarray(rows, buffer.dtype)
    if n + len(rows) > len(buffer):
        grown = np.empty((max(2 * len(buffer), n + len(rows)),) + buffer.shape[1:], buffer.dtype)
        grown[:n] = buffer[:n]
        buffer = grown
    buffer[n : n + len(rows)] = rows
    return buffer


class NumpyBackend:
    """Exact search: float32 matrix products pick candidates, float64 differences give the answer.

    Queries are searched in batches of `query_batch` against the gallery in
    chunks of `chunk_rows` rows. One BLAS product per (batch, chunk) scores
    every row as `|g|^2 - 2 q.g`, the squared distance less `|q|^2`, with a
    float32 rounding error below a proven bound `b` (`_rounding_bound`). Each
    query keeps its running exact top k (float64 sums of squared differences,
    ties by row), and a row is re-scored only if its float32 score is within
    `b` of the running k-th distance: every row of the exact top k is, so the
    answer (order, ties, a self-match's distance 0) is that of a float64 brute
    force, with no second pass for near-ties or duplicates. No `(N, D)`
    temporary: extra memory is at most about `query_batch * chunk_rows * 9` bytes,
    whatever N. The feature buffer grows by doubling (`append_rows`).

    Args:
        dim: feature dimension.
        chunk_rows: gallery rows per matrix product.
        query_batch: queries per matrix product.

    Example:
    ```python
    backend = NumpyBackend(2048)
    backend.add(features)
    distances, rows = backend.search(queries, k=10)
    ```
    """

    name = "numpy"

    def __init__(self, dim, chunk_rows=CHUNK_ROWS, query_batch=QUERY_BATCH):
        self.dim = int(dim)
        if int(chunk_rows) < 1 or int(query_batch) < 1:
            raise ValueError(f"chunk_rows and query_batch must be positive, got {chunk_rows}, {query_batch}.")
        self.chunk_rows, self.query_batch = int(chunk_rows), int(query_batch)
        self._buffer = np.empty((0, self.dim), np.float32)
        self._sq_norms = np.empty(0, np.float32)  # |g|^2 per row, for the matrix-product scores
        self._n = 0  # rows in use; len(self._buffer) is the capacity

    def __len__(self):
        return self._n

    @property
    def features(self):
        """`(N, D)` float32 view of the stored rows."""
        return self._buffer[: self._n]

    def config(self):
        return {"backend": self.name}

    def reserve(self, capacity):
        """Makes room for `capacity` rows in all, e.g. before adding a large gallery chunk by chunk."""
        extra = int(capacity) - len(self._buffer)
        if extra > 0:
            self._buffer = append_rows(self._buffer, len(self._buffer), np.empty((extra, self.dim), np.float32))
            self._sq_norms = append_rows(self._sq_norms, len(self._sq_norms), np.empty(extra, np.float32))

    def add(self, features):
        features = _as_rows(features, self.dim)
        f64 = features.astype(np.float64)
        self._buffer = append_rows(self._buffer, self._n, features)
        self._sq_norms = append_rows(self._sq_norms, self._n, np.einsum("ij,ij->i", f64, f64))
        self._n += len(features)

    def search(self, queries, k):
        """`(distances, rows)`, each `(Q, k')` with k' = min(k, N); nearest first, ties by row."""
        queries = _as_rows(queries, self.dim, "queries")
        k = min(int(k), self._n)
        distances, rows = np.empty((len(queries), k), np.float32), np.empty((len(queries), k), np.int64)
        if k == 0 or len(queries) == 0:
            return distances, rows
        sq = self._sq_norms[: self._n]
        lo, hi = float(sq.min()), float(sq.max())
        # L2-normalised galleries (every |g|^2 within 1e-5): the scores skip adding |g|^2 (a pass per block
        # less) and are then off by up to the spread hi - lo, which the limits below take in.
        norms = None if hi - lo <= 1e-5 else self._sq_norms
        for start in range(0, len(queries), self.query_batch):
            stop = start + self.query_batch
            distances[start:stop], rows[start:stop] = self._search_batch(queries[start:stop], k, norms, lo, hi)
        return distances, rows

    def _rounding_bound(self, q_sq, g_sq_max):
        """Per query, a bound on |float32 score - exact `|g|^2 - 2 q.g`| over every row, with a 2x margin.

        A float32 dot product of length D errs by at most ~D u |q||g| in any
        summation order (u = 2^-24); storing |g|^2 and the addition add a few
        u (|g|^2 + 2|q||g|).
        """
        u, qg = 2.0**-24, np.sqrt(q_sq * g_sq_max)
        return 2.0 * (2.0 * (self.dim + 2) * u * qg + 2.0 * u * g_sq_max + 2.0 * u * qg)

    def _search_batch(self, queries, k, norms, lo, hi):
        n, qb = self._n, len(queries)
        q64 = queries.astype(np.float64)
        q_sq = np.einsum("ij,ij->i", q64, q64)
        bound = self._rounding_bound(q_sq, hi)
        # score ~ d^2 - offset, within `bound` when |g|^2 is added, within [bound, bound + hi - lo] when not.
        offset, spread = (q_sq, 0.0) if norms is not None else (q_sq + lo, hi - lo)
        best_d = np.full((qb, k), np.inf)  # running exact top k: float64 squared distances ...
        best_r = np.full((qb, k), n, np.int64)  # ... and their rows, ties by row
        limit = np.full(qb, np.inf)  # keep rows scoring <= limit
        scaled = queries * np.float32(-2.0)  # exact: folds the -2 into the queries, not each block
        block = np.empty((qb, min(self.chunk_rows, n)), np.float32)
        for start in range(0, n, self.chunk_rows):
            stop = min(start + self.chunk_rows, n)
            s = np.matmul(scaled, self._buffer[start:stop].T, out=block[:, : stop - start])
            if norms is not None:
                s += norms[start:stop]
            if start < k:
                # Fewer than k exact distances known yet: a row of the top k is in this block's top k, so it
                # scores within 2 bounds (+ spread) of the block's k-th float32 score.
                kk = min(k, stop - start)
                limit = np.partition(s, kk - 1, axis=1)[:, kk - 1] + (2 * bound + spread)
            # flatnonzero + divmod: np.nonzero on the 2-D mask costs ~4 % of the block's product, this ~0.3 %.
            qi, ci = np.divmod(np.flatnonzero(s <= limit[:, None]), stop - start)  # grouped by query, rows in order
            if len(qi) == 0:
                continue
            d2 = self._exact_sq_distances(queries, qi, ci + start)
            best_d, best_r = self._merge(best_d, best_r, qi, d2, ci + start)
            if stop >= k:  # k rows seen: the k-th exact distance bounds every row that can still enter
                limit = best_d[:, k - 1] - offset + bound
        return np.sqrt(best_d).astype(np.float32), best_r

    @staticmethod
    def _merge(best_d, best_r, qi, d2, rows):
        """Per query, the k smallest (distance, row) of its running top k and the new pairs."""
        qb, k = best_d.shape
        counts = np.bincount(qi, minlength=qb)
        slot = np.arange(len(qi)) - np.repeat(np.cumsum(counts) - counts, counts)  # pairs come grouped by query
        new_d = np.full((qb, int(counts.max())), np.inf)
        new_r = np.full(new_d.shape, np.iinfo(np.int64).max)
        new_d[qi, slot], new_r[qi, slot] = d2, rows
        all_d, all_r = np.concatenate([best_d, new_d], 1), np.concatenate([best_r, new_r], 1)
        order = np.lexsort((all_r, all_d), axis=-1)[:, :k]
        return np.take_along_axis(all_d, order, 1), np.take_along_axis(all_r, order, 1)

    def _exact_sq_distances(self, queries, qi, rows):
        """float64 sum of squared differences of `queries[qi]` to `self._buffer[rows]`, pair by pair."""
        d2 = np.empty(len(qi), np.float64)
        step = max(1, (self.query_batch * self.chunk_rows) // (2 * self.dim))  # float64 temp <= one float32 block
        for lo in range(0, len(qi), step):
            diff = self._buffer[rows[lo : lo + step]].astype(np.float64)
            diff -= queries[qi[lo : lo + step]]
            np.square(diff, out=diff)
            d2[lo : lo + step] = diff.sum(axis=-1)
        return d2

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
                raise ValueError(
                    f"faiss_index {self.faiss_index!r} is not a FAISS index-factory string "
                    f"(e.g. 'Flat', 'IVF1024,Flat', 'IVF1024,SQ8', 'HNSW32'): "
                    f"{str(err).splitlines()[-1]}"
                ) from None
        if index.d != self.dim or index.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise ValueError(
                f"Expected a {self.dim}-d inner-product FAISS index, got d={index.d}, metric {index.metric_type}."
            )
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
                raise ValueError(
                    f"faiss_index {self.faiss_index!r} trains on the first features added and needs "
                    f"more than {len(features)}: {str(err).splitlines()[-1].split(': ')[-1]} "
                    "(add more at first, use a smaller nlist, or 'Flat')."
                ) from None
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
            raise ValueError(
                f"backend='numpy' is exact brute force; {sorted(given) or ['faiss_index']} need backend='faiss'."
            )
        return NumpyBackend(dim)
    if backend == "faiss":
        return FaissBackend(dim, faiss_index, **knobs)
    raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}.")
