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


class NumpyBackend:
    """Exact search: float32 matrix products for candidates, float64 differences for the answer.

    Queries are searched in batches of `query_batch` against the gallery in
    chunks of `chunk_rows` rows: one BLAS product per (batch, chunk) gives
    `|g|^2 - 2 q.g` (the squared distance less `|q|^2`), and only rows below
    each query's running M-th best (M = 2k + 8) are kept. The kept rows are
    then re-scored as float64 sums of squared differences, so the top k, their
    order (ties by row) and a self-match's distance 0 are those of a float64
    brute force. Float32 rounding of the product is bounded
    (`_rounding_bound`); a query whose M-th and k-th candidates are closer than
    that bound (many duplicates, near-ties) gets a second pass that keeps every
    row within it. No `(N, D)` temporary: extra memory is about
    `query_batch * chunk_rows * 16` bytes, whatever N.
    The feature buffer grows by doubling, so many small `add`s cost amortised
    O(rows added), not a copy of the gallery each.

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
        self._sq_norms = np.empty(0, np.float32)  # |g|^2 per row, for the matrix-product distances
        self._n = 0
        self._max_norm = 0.0
        self._sq_range = (np.inf, -np.inf)  # min and max of |g|^2
        self.reallocations = 0  # buffer growths (doubling keeps them O(log N))

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
        if int(capacity) > len(self._buffer):
            self._grow(int(capacity))

    def _grow(self, capacity):
        n = self._n
        buffer = np.empty((capacity, self.dim), np.float32)
        buffer[:n] = self._buffer[:n]
        sq_norms = np.empty(capacity, np.float32)
        sq_norms[:n] = self._sq_norms[:n]
        self._buffer, self._sq_norms = buffer, sq_norms
        self.reallocations += 1

    def add(self, features):
        features = _as_rows(features, self.dim)
        n, m = self._n, len(features)
        if n + m > len(self._buffer):
            # Doubling: a run of small adds copies each row O(1) times on average.
            self._grow(max(2 * len(self._buffer), n + m))
        self._buffer[n : n + m] = features
        sq = np.einsum("ij,ij->i", features.astype(np.float64), features.astype(np.float64)) if m else np.empty(0)
        self._sq_norms[n : n + m] = sq
        if m:
            self._max_norm = max(self._max_norm, float(np.sqrt(sq.max())))
            self._sq_range = (min(self._sq_range[0], float(sq.min())), max(self._sq_range[1], float(sq.max())))
        self._n = n + m

    def _rounding_bound(self, query_norms):
        """Per query, a bound on |float32 score - exact `|g|^2 - 2 q.g`| (up to one constant) over every row (2x margin).

        A float32 dot product of length D errs by at most ~D u |q||g| in any
        summation order (u = 2^-24); storing |g|^2 and the subtraction add a
        few u (|g|^2 + 2|q||g|).
        """
        u, g = 2.0 ** -24, self._max_norm
        bound = 2.0 * (2.0 * (self.dim + 2) * u * query_norms * g + 2.0 * u * g * g + 2.0 * u * query_norms * g)
        if not self._norms_added():  # scores leave out |g|^2, which differs between rows by at most the spread
            bound = bound + (self._sq_range[1] - self._sq_range[0])
        return bound

    def _norms_added(self):
        """False when every |g|^2 is within 1e-5 of the others (L2-normalised features): the scores then skip
        adding them (one pass less per block) and the rounding bound takes the spread instead."""
        return self._sq_range[1] - self._sq_range[0] > 1e-5

    def search(self, queries, k):
        """`(distances, rows)`, each `(Q, k')` with k' = min(k, N); nearest first, ties by row."""
        queries = _as_rows(queries, self.dim, "queries")
        k = min(int(k), self._n)
        distances, rows = np.empty((len(queries), k), np.float32), np.empty((len(queries), k), np.int64)
        if k == 0 or len(queries) == 0:
            return distances, rows
        for start in range(0, len(queries), self.query_batch):
            batch = queries[start : start + self.query_batch]
            d, r = self._search_batch(batch, k)
            distances[start : start + len(batch)], rows[start : start + len(batch)] = d, r
        return distances, rows

    def _scores(self, scaled_queries, start, stop, out=None):
        """float32 `|g|^2 - 2 q.g` against gallery rows [start, stop), from `scaled_queries` = -2 q.

        Scaling by -2 is exact in floating point, so folding it into the
        queries saves a pass over each block without changing a bit.
        """
        s = np.matmul(scaled_queries, self._buffer[start:stop].T, out=out)
        if self._norms_added():
            s += self._sq_norms[start:stop]
        return s

    def _search_batch(self, queries, k):
        n, qb = self._n, len(queries)
        m = min(n, 2 * k + 8)  # candidates kept per query
        best_s = np.full((qb, m), np.inf, np.float32)
        best_r = np.full((qb, m), -1, np.int64)
        threshold = np.full(qb, np.inf, np.float32)
        block = np.empty((qb, min(self.chunk_rows, n)), np.float32)
        scaled = queries * np.float32(-2.0)
        for start in range(0, n, self.chunk_rows):
            stop = min(start + self.chunk_rows, n)
            s = self._scores(scaled, start, stop, out=block[:, : stop - start])
            if start == 0 and stop > 16 * m:
                # The m-th best of a sample bounds the m-th best overall: the first chunk's merge stays small.
                threshold = np.partition(s[:, : 16 * m], m - 1, axis=1)[:, m - 1]
                keep = s <= threshold[:, None]
            else:
                keep = s < threshold[:, None]
            counts = np.count_nonzero(keep, axis=1)
            width = int(counts.max())
            if width == 0:
                continue
            if 4 * width > stop - start:  # most rows pass (the first chunk): merge the whole block
                all_s = np.concatenate([best_s, s], axis=1)
                part = np.argpartition(all_s, m - 1, axis=1)[:, :m]
                best_s = np.take_along_axis(all_s, part, 1)
                best_r = np.where(part < m, np.take_along_axis(best_r, np.minimum(part, m - 1), 1), part - m + start)
                threshold = best_s.max(axis=1)
                continue
            # Only the rows under the running M-th best join the merge (few after the first chunk).
            qi, ci = np.nonzero(keep)
            slot = np.arange(len(qi)) - np.repeat(np.cumsum(counts) - counts, counts)
            new_s = np.full((qb, width), np.inf, np.float32)
            new_r = np.full((qb, width), -1, np.int64)
            new_s[qi, slot], new_r[qi, slot] = s[qi, ci], ci + start
            all_s, all_r = np.concatenate([best_s, new_s], axis=1), np.concatenate([best_r, new_r], axis=1)
            part = np.argpartition(all_s, m - 1, axis=1)[:, :m]
            best_s, best_r = np.take_along_axis(all_s, part, 1), np.take_along_axis(all_r, part, 1)
            threshold = best_s.max(axis=1)
        del block
        # Every row left out scored >= the M-th kept; if that is beyond the k-th kept plus twice the
        # rounding bound, no left-out row can be among the exact top k (ties included).
        q_norms = np.sqrt(np.einsum("ij,ij->i", queries.astype(np.float64), queries.astype(np.float64)))
        bound = self._rounding_bound(q_norms)
        kth = np.partition(best_s, k - 1, axis=1)[:, k - 1].astype(np.float64)
        safe = (best_s.max(axis=1) > kth + 2 * bound) if m < n else np.ones(qb, bool)
        distances, rows = np.empty((qb, k), np.float32), np.empty((qb, k), np.int64)
        d2 = self._exact_sq_distances(queries, best_r)
        order = np.lexsort((best_r, d2), axis=-1)[:, :k]
        rows[:] = np.take_along_axis(best_r, order, 1)
        distances[:] = np.sqrt(np.take_along_axis(d2, order, 1))
        for q in np.flatnonzero(~safe):
            distances[q], rows[q] = self._search_wide(queries[q], k, kth[q] + 2 * bound[q])
        return distances, rows

    def _exact_sq_distances(self, queries, cand_rows):
        """float64 sum of squared differences of each query to its candidate rows (inf where row is -1)."""
        qb, m = cand_rows.shape
        d2 = np.empty((qb, m), np.float64)
        step = max(1, (self.query_batch * self.chunk_rows * 4) // (m * self.dim * 8))
        for lo in range(0, qb, step):
            r = cand_rows[lo : lo + step]
            diff = self._buffer[np.maximum(r, 0)].astype(np.float64)
            diff -= queries[lo : lo + step, None, :].astype(np.float64)
            np.square(diff, out=diff)
            d2[lo : lo + step] = diff.sum(axis=-1)
        d2[cand_rows < 0] = np.inf
        return d2

    def _search_wide(self, query, k, limit):
        """Exact top k of one query from every row whose float32 score is within `limit` (rare: near-ties)."""
        best_d, best_r = np.full(0, np.inf), np.zeros(0, np.int64)
        step = max(1, (self.query_batch * self.chunk_rows * 4) // (self.dim * 8))
        for start in range(0, self._n, self.chunk_rows):
            stop = min(start + self.chunk_rows, self._n)
            s = self._scores(query[None] * np.float32(-2.0), start, stop)[0]
            near = np.flatnonzero(s <= limit) + start
            for lo in range(0, len(near), step):
                r = near[lo : lo + step]
                d = self._exact_sq_distances(query[None], r[None])[0]
                best_d, best_r = np.concatenate([best_d, d]), np.concatenate([best_r, r])
                order = np.lexsort((best_r, best_d))[:k]
                best_d, best_r = best_d[order], best_r[order]
        return np.sqrt(best_d), best_r

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
