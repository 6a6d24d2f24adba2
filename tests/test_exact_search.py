"""Exact NumPy search: float64 brute-force answers from blocked matrix products, bounded memory, amortised adds."""

import tracemalloc

import numpy as np
import pytest

from keras_mmga.deploy import GalleryIndex
from keras_mmga.deploy.search_engines import NumpyBackend


def brute_force(gallery, queries, k):
    """float64 sums of squared differences, k smallest, ties by row (the reference)."""
    g64 = gallery.astype(np.float64)
    dists, rows = [], []
    for q in queries.astype(np.float64):
        d = np.sum((g64 - q) ** 2, axis=1)
        order = np.lexsort((np.arange(len(d)), d))[:k]
        dists.append(np.sqrt(d[order]))
        rows.append(order)
    return np.array(dists), np.array(rows)


def unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def gallery_with_ties(n, dim, seed):
    rng = np.random.default_rng(seed)
    g = unit(rng.normal(size=(n, dim)))
    g[5] = g[3]  # a duplicate pair
    g[20:50] = g[2]  # 31 copies of one row: more than the 2k + 8 candidates kept
    g[60] = -g[2]  # the opposite vector (distance 2)
    return g


@pytest.mark.parametrize(
    "n, chunk_rows, query_batch, k",
    [
        (97, 16, 4, 10),  # N not a multiple of the chunk; queries not a multiple of the batch
        (97, 97, 64, 5),  # one chunk, one batch
        (97, 1, 1, 3),  # one row per chunk, one query per batch
        (64, 10, 3, 64),  # k = N
        (64, 10, 3, 500),  # k > N: all rows
        (300, 33, 7, 1),
        (500, 400, 7, 3),  # first chunk wider than 16 (2k + 8): threshold from a sample of it
        (1000, 600, 5, 10),
    ],
)
def test_same_answer_as_float64_brute_force(n, chunk_rows, query_batch, k):
    g = gallery_with_ties(n, 24, seed=n + k)
    rng = np.random.default_rng(1)
    queries = np.concatenate([g[:12], g[20:22], unit(rng.normal(size=(9, 24)))])  # self-matches and fresh queries
    backend = NumpyBackend(24, chunk_rows=chunk_rows, query_batch=query_batch)
    backend.add(g)
    distances, rows = backend.search(queries, k)
    want_d, want_r = brute_force(g, queries, min(k, n))
    assert rows.shape == (len(queries), min(k, n))
    np.testing.assert_array_equal(rows, want_r)
    np.testing.assert_allclose(distances, want_d, rtol=0, atol=1e-6)
    assert (distances[:14, 0] == 0).all()  # a self-match is exactly 0, not 2 - 2ab rounding
    if k >= 31:  # the 31 copies of row 2 come out in row order, all at distance 0
        np.testing.assert_array_equal(rows[12, :31], [2, *range(20, 50)])


@pytest.mark.parametrize("scale_one_row", [False, True])  # unit rows (scores skip |g|^2) / rows of two norms
@pytest.mark.parametrize("ties_first", [False, True])  # near-ties after k exact distances are known / before
def test_near_ties_below_float32_rounding(monkeypatch, scale_one_row, ties_first):
    rescored = []  # rows re-scored in float64: every row within the float32 rounding bound must be
    original = NumpyBackend._exact_sq_distances
    monkeypatch.setattr(
        NumpyBackend,
        "_exact_sq_distances",
        lambda self, q, qi, rows: rescored.extend(rows.tolist()) or original(self, q, qi, rows),
    )
    # Rows differ from the query by less than float32 matrix-product rounding: the float64 re-score orders them.
    rng = np.random.default_rng(3)
    base = unit(rng.normal(size=(1, 512)))[0]
    g = np.repeat(base[None], 200, axis=0)
    idx = rng.choice(512, 200)
    g[np.arange(200), idx] += rng.choice([-1, 1], 200) * rng.integers(1, 4, 200) * np.float32(2**-20)
    g = np.concatenate([unit(rng.normal(size=(300, 512))), g])
    if scale_one_row:  # |g|^2 now differs between rows: only the rounding bound keeps the near-ties in
        g[0] *= 3
    if ties_first:  # the near-ties fill the first chunks
        g = np.roll(g, -300, axis=0)
    backend = NumpyBackend(512, chunk_rows=64, query_batch=2)
    backend.add(g)
    distances, rows = backend.search(base[None], 10)
    want_d, want_r = brute_force(g, base[None], 10)
    np.testing.assert_array_equal(rows, want_r)
    np.testing.assert_allclose(distances, want_d, rtol=1e-6, atol=0)
    ties = range(0, 200) if ties_first else range(300, 500)
    assert set(ties) <= set(rescored)  # all 200 near-ties, not just the k best float32 scores


def test_search_memory_is_bounded_by_the_block_not_the_gallery():
    n, dim, chunk_rows, query_batch = 20_000, 128, 1024, 32
    g = unit(np.random.default_rng(0).normal(size=(n, dim)))
    backend = NumpyBackend(dim, chunk_rows=chunk_rows, query_batch=query_batch)
    backend.add(g)
    queries = g[:100]
    tracemalloc.start()
    _, rows = backend.search(queries, 10)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    block = query_batch * chunk_rows * 4
    assert peak < 8 * block, (peak, block)  # 8 * 128 KB = 1 MB ...
    assert peak < g.nbytes / 8  # ... against a 10 MB gallery (the old loop took N x D per query)
    np.testing.assert_array_equal(rows[:, 0], np.arange(100))


def test_many_small_adds_grow_by_doubling_and_match_one_build():
    rng = np.random.default_rng(2)
    g = unit(rng.normal(size=(1000, 16)))
    one = NumpyBackend(16)
    one.add(g)
    grown = NumpyBackend(16)
    buffers = [grown._buffer]  # held, so a new buffer is never the old one's memory
    for start in range(0, 1000, 3):
        grown.add(g[start : start + 3])
        if grown._buffer is not buffers[-1]:
            buffers.append(grown._buffer)
    assert len(buffers) - 1 <= 10  # log2(1000 / 3) + 1, not one copy per add (334)
    np.testing.assert_array_equal(grown.features, g)
    queries = g[::97]
    for a, b in zip(grown.search(queries, 7), one.search(queries, 7)):
        np.testing.assert_array_equal(a, b)


def test_gallery_index_adds_save_and_load(tmp_path):
    rng = np.random.default_rng(4)
    g = unit(rng.normal(size=(60, 8)))
    index = GalleryIndex(g[:10], [f"{i}.jpg" for i in range(10)], np.arange(10), np.zeros(10))
    for start in range(10, 60, 5):
        index.add(
            g[start : start + 5],
            [f"{i}.jpg" for i in range(start, start + 5)],
            np.arange(start, start + 5),
            np.zeros(5),
        )
    np.testing.assert_array_equal(index.features, g)
    index.save(tmp_path / "g")
    loaded = GalleryIndex.load(tmp_path / "g")
    np.testing.assert_array_equal(loaded.features, g)
    want_d, want_r = brute_force(g, g[:4], 5)
    for idx in (index, loaded):
        d, r = idx.search(g[:4], 5)
        np.testing.assert_array_equal(r, want_r)
        np.testing.assert_allclose(d, want_d, atol=1e-6)


def test_reserve_then_adds_do_not_reallocate():
    g = unit(np.random.default_rng(5).normal(size=(100, 8)))
    backend = NumpyBackend(8)
    backend.reserve(100)
    buffer = backend._buffer
    assert buffer.shape == (100, 8) and len(backend) == 0
    for start in range(0, 100, 10):
        backend.add(g[start : start + 10])
    assert backend._buffer is buffer
    np.testing.assert_array_equal(backend.features, g)
    np.testing.assert_array_equal(backend.search(g[7:8], 1)[1], [[7]])


def test_rows_of_different_norms():
    # Not L2-normalised: the scores must add |g|^2 (the unit-norm shortcut does not apply).
    rng = np.random.default_rng(6)
    g = rng.normal(size=(300, 16)).astype(np.float32) * rng.uniform(0.1, 10, (300, 1)).astype(np.float32)
    g[7] = g[3]
    queries = np.concatenate([g[:5], rng.normal(size=(4, 16)).astype(np.float32)])
    backend = NumpyBackend(16, chunk_rows=50, query_batch=4)
    backend.add(g)
    sq_norms = np.sum(g.astype(np.float64) ** 2, axis=1)
    assert sq_norms.max() - sq_norms.min() > 1e-5  # the path that adds |g|^2 to the scores
    distances, rows = backend.search(queries, 6)
    want_d, want_r = brute_force(g, queries, 6)
    np.testing.assert_array_equal(rows, want_r)
    np.testing.assert_allclose(distances, want_d, rtol=1e-6, atol=1e-6)
    assert (distances[:5, 0] == 0).all()


def test_exact_ties_between_different_rows_come_in_row_order():
    # Integer features: float32 and float64 distances are exact, so the ties are true ties.
    g = np.zeros((40, 6), np.float32)
    g[np.arange(40), np.arange(40) % 6] = 1.0 + (np.arange(40) // 12)  # one-hot rows of length 1..4
    g[39] = 0.0  # the origin
    queries = np.concatenate([g[[0, 6, 39]], np.full((1, 6), 0.5, np.float32)])
    for chunk_rows in (5, 40):
        backend = NumpyBackend(6, chunk_rows=chunk_rows, query_batch=3)
        backend.add(g)
        distances, rows = backend.search(queries, 12)
        want_d, want_r = brute_force(g, queries, 12)
        np.testing.assert_array_equal(rows, want_r)
        np.testing.assert_array_equal(distances, want_d.astype(np.float32))
    assert rows[0, :2].tolist() == [0, 6] and rows[2, 0] == 39  # duplicate of the query, then the origin


def test_every_row_equal():
    # Every row ties with every other: all are candidates in every chunk, the answer is rows 0..k-1.
    g = np.repeat(unit(np.random.default_rng(7).normal(size=(1, 32))), 50, axis=0)
    backend = NumpyBackend(32, chunk_rows=8, query_batch=2)
    backend.add(g)
    distances, rows = backend.search(np.concatenate([g[:1], -g[:1]]), 12)
    np.testing.assert_array_equal(rows, [list(range(12))] * 2)
    np.testing.assert_array_equal(distances[0], 0)
    np.testing.assert_allclose(distances[1], 2, rtol=1e-7)


def test_gallery_index_ids_grow_by_doubling():
    rng = np.random.default_rng(8)
    g = unit(rng.normal(size=(300, 8)))
    index = GalleryIndex(g[:0], [], [], [])
    buffers = [index._pids]
    for start in range(0, 300, 2):
        index.add(g[start : start + 2], [f"{i}.jpg" for i in (start, start + 1)], [start, start + 1], [7, 8])
        if index._pids is not buffers[-1]:
            buffers.append(index._pids)
    assert len(buffers) - 1 <= 9  # log2(300 / 2) + 1, not one copy per add (150)
    np.testing.assert_array_equal(index.pids, np.arange(300))
    np.testing.assert_array_equal(index.camids, np.tile([7, 8], 150))
    assert index.pids.dtype == np.int64 and len(index) == 300
    np.testing.assert_array_equal(index.search(g[[5, 250]], 1)[1], [[5], [250]])
