"""Gallery search at scale: exact NumPy, exact FAISS Flat and FAISS approximate indexes, side by side in one run.

The features imitate re-ID embeddings: identities (2-10 views each, several
cameras) whose centres lie in a 256-d subspace grouped into appearance
clusters (people dressed alike), views spread around their centre plus
isotropic noise, and single-view distractors; all L2-normalised. Queries are
held-out views of gallery identities. The features are generated chunk by
chunk into a float16 file on disk and read back in chunks.

One after the other (each freed before the next is built):
- `NumpyBackend` (what `GalleryIndex(backend="numpy")` searches with): the
  reference top-k every other row's recall is measured against; the old
  per-query loop (`np.sum((G - q) ** 2)`, before issue 29) on a few queries;
- FAISS `IndexFlatIP` (exact);
- each approximate FAISS index, built through `GalleryIndex(..., backend="faiss")`
  (first chunk trains it, then `add` chunk by chunk).
Per row: queries/s (all queries in one call), recall@10 against the NumPy
exact top 10, build time, index size, and peak RSS during the search (the
kernel's high-water mark, reset just before it). BLAS: numpy's OpenBLAS,
whose kernel and threads are printed.

Usage:
    heavy python benchmarks/bench_gallery.py [--n 200000] [--dim 2048] [--queries 500] \
        [--index IVF256,SQ8:nprobe=8,16] [--workdir /tmp/bench_gallery]
"""

import argparse
import os
import shutil
import time

import numpy as np

from keras_mmga.deploy import GalleryIndex
from keras_mmga.deploy.search_engines import NumpyBackend

CHUNK = 50_000
LATENT = 256


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


class Generator:
    """Re-ID-like features, reproducible chunk by chunk (rows grouped by identity)."""

    def __init__(self, n, dim, seed=0, distractor_fraction=0.2, groups=2000):
        rng = np.random.RandomState(seed)
        self.dim = dim
        self.basis = np.linalg.qr(rng.randn(dim, LATENT))[0].astype(np.float32)  # orthonormal columns
        group_centres = rng.randn(groups, LATENT).astype(np.float32)
        n_views = []
        total, target = 0, int(n * (1 - distractor_fraction))
        while total < target:
            v = int(rng.randint(2, 11))
            v = min(v, target - total)
            n_views.append(v)
            total += v
        self.views = np.array(n_views)
        n_ids = len(self.views)
        self.n_distractors = n - total
        groups_of = rng.randint(0, groups, n_ids + self.n_distractors)
        # Identity (and distractor) centres in the latent space: near their appearance group.
        self.latent = group_centres[groups_of] + 0.8 * rng.randn(len(groups_of), LATENT).astype(np.float32)
        self.pids = np.concatenate([np.repeat(np.arange(1, n_ids + 1), self.views), np.zeros(self.n_distractors, int)])
        self.owner = np.concatenate([np.repeat(np.arange(n_ids), self.views), n_ids + np.arange(self.n_distractors)])
        self.n = n

    def _views_of(self, owners, rng):
        centre = self.latent[owners] + 0.45 * rng.randn(len(owners), LATENT).astype(np.float32)
        x = centre @ self.basis.T
        x = _unit(x) + (0.35 / np.sqrt(self.dim)) * rng.randn(len(owners), self.dim).astype(np.float32)
        return _unit(x).astype(np.float32)

    def chunk(self, start, stop):
        return self._views_of(self.owner[start:stop], np.random.RandomState(1000 + start // CHUNK))

    def queries(self, count, seed=1):
        rng = np.random.RandomState(seed)
        ids = rng.choice(len(self.views), count, replace=False)
        return self._views_of(ids, rng), ids + 1


def write_features(gen, path):
    t = time.perf_counter()
    with open(path, "wb") as f:
        for start in range(0, gen.n, CHUNK):
            gen.chunk(start, min(start + CHUNK, gen.n)).astype(np.float16).tofile(f)
    return time.perf_counter() - t


def read_chunk(path, dim, start, stop):
    # Plain reads, not a memmap: mapped pages would count in this process's memory.
    with open(path, "rb") as f:
        f.seek(start * dim * 2)
        return np.fromfile(f, np.float16, (stop - start) * dim).reshape(-1, dim).astype(np.float32)


def _reset_peak():
    """Resets the kernel's peak-RSS mark (VmHWM) so the next `_peak_gb` covers only what follows."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _peak_gb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 2**20


def _openblas():
    import ctypes
    import glob

    for lib in glob.glob(os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs", "*openblas*")):
        blas = ctypes.CDLL(lib)
        for suffix in ("scipy_openblas_{}64_", "openblas_{}"):
            if hasattr(blas, suffix.format("get_corename")):
                return blas, suffix
    return None, None


def set_threads(n):
    """numpy's OpenBLAS and FAISS's OpenMP both on `n` threads (a fair match on shared cores)."""
    import ctypes

    import faiss

    faiss.omp_set_num_threads(n)
    blas, suffix = _openblas()
    if blas is not None:
        getattr(blas, suffix.format("set_num_threads"))(ctypes.c_int(n))


def faiss_blas_info():
    """The kernel of the OpenBLAS bundled with the faiss-cpu wheel (an older one: 'Prescott' = no AVX), or '?'."""
    import ctypes
    import glob

    import faiss

    for lib in glob.glob(os.path.join(os.path.dirname(faiss.__file__), os.pardir, "faiss_cpu.libs", "*openblas*")):
        core = ctypes.CDLL(lib).openblas_get_corename
        core.restype = ctypes.c_char_p
        return f"{os.path.basename(lib)} {core().decode()}"
    return "?"


def blas_info():
    """numpy's OpenBLAS kernel and thread count (e.g. "SkylakeX, 2 threads"), or '?'."""
    import ctypes
    import glob

    for lib in glob.glob(os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs", "*openblas*")):
        blas = ctypes.CDLL(lib)
        for suffix in ("scipy_openblas_{}64_", "openblas_{}"):
            try:
                core = getattr(blas, suffix.format("get_corename"))
                core.restype = ctypes.c_char_p
                return f"{core().decode()}, {getattr(blas, suffix.format('get_num_threads'))()} threads"
            except AttributeError:
                continue
    return "?"


def timed_search(search, queries, k):
    """(top-k rows, queries/s, peak RSS GB during the search)."""
    search(queries[:10], k)  # warm-up
    _reset_peak()
    t = time.perf_counter()
    _, rows = search(queries, k)
    seconds = time.perf_counter() - t
    return rows, len(queries) / seconds, _peak_gb()


def recall(found, exact, k):
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(found, exact)]))


def bench_numpy(path, gen, queries, k, old_queries):
    """The package's exact search; also the old per-query loop on `old_queries` queries."""
    t = time.perf_counter()
    backend = NumpyBackend(gen.dim)
    backend.reserve(gen.n)
    for start in range(0, gen.n, CHUNK):
        backend.add(read_chunk(path, gen.dim, start, min(start + CHUNK, gen.n)))
    build = time.perf_counter() - t
    rows, qps, peak = timed_search(backend.search, queries, k)
    size = backend.features.nbytes / 2**30
    out = [
        dict(
            index="exact NumPy (GalleryIndex default)", knob="-", build=build, size=size, qps=qps, recall=1.0, peak=peak
        )
    ]
    if old_queries:
        g = backend.features
        t = time.perf_counter()
        for q in queries[:old_queries]:  # the search before issue 29: an N x D temporary per query
            d = np.sqrt(np.maximum(np.sum((g - q) ** 2, axis=1), 0.0))
            np.argpartition(d, k - 1)[:k]
        out.append(
            dict(
                index=f"old NumPy loop ({old_queries} queries)",
                knob="-",
                build=build,
                size=size,
                qps=old_queries / (time.perf_counter() - t),
                recall=float("nan"),
                peak=float("nan"),
            )
        )
    del backend
    return rows, out


def bench_flat(path, gen, queries, exact, k):
    import faiss

    t = time.perf_counter()
    index = faiss.IndexFlatIP(gen.dim)
    for start in range(0, gen.n, CHUNK):
        index.add(read_chunk(path, gen.dim, start, min(start + CHUNK, gen.n)))
    build = time.perf_counter() - t
    rows, qps, peak = timed_search(index.search, queries, k)
    size = index.ntotal * gen.dim * 4 / 2**30
    del index
    return dict(
        index="exact FAISS IndexFlatIP",
        knob="-",
        build=build,
        size=size,
        qps=qps,
        recall=recall(rows, exact, k),
        peak=peak,
    )


def parse_index(spec):
    """`"HNSW32,SQ8:efSearch=64,128"` -> ("HNSW32,SQ8", "efSearch", [64, 128])."""
    factory, _, knobs = spec.partition(":")
    if not knobs:
        return factory, None, [None]
    name, _, values = knobs.partition("=")
    return factory, name, [int(v) for v in values.split(",")]


def bench_index(spec, path, gen, queries, exact, k):
    import faiss

    factory, knob, values = parse_index(spec)
    t = time.perf_counter()
    first = min(CHUNK, gen.n)  # what an IVF / SQ / PCA index trains on
    build_knobs = {knob: values[0]} if knob else {}
    index = GalleryIndex(
        read_chunk(path, gen.dim, 0, first),
        [""] * first,
        gen.pids[:first],
        np.zeros(first),
        backend="faiss",
        faiss_index=factory,
        **build_knobs,
    )
    for start in range(first, gen.n, CHUNK):
        stop = min(start + CHUNK, gen.n)
        index.add(
            read_chunk(path, gen.dim, start, stop), [""] * (stop - start), gen.pids[start:stop], np.zeros(stop - start)
        )
    build = time.perf_counter() - t
    size = faiss.serialize_index(index._search.index).nbytes / 2**30
    rows = []
    for value in values:
        if knob:
            index.set_search_knobs(**{knob: value})
        found, qps, peak = timed_search(index.search, queries, k)
        rows.append(
            dict(
                index=factory,
                knob=f"{knob}={value}" if knob else "-",
                build=build,
                size=size,
                qps=qps,
                recall=recall(found, exact, k),
                peak=peak,
            )
        )
    del index
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=200_000)
    p.add_argument("--dim", type=int, default=2048)
    p.add_argument("--queries", type=int, default=500)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--old", type=int, default=5, help="queries timed with the old per-query loop (0: skip)")
    p.add_argument("--index", nargs="*", default=["IVF256,SQ8:nprobe=8,16"], help="FACTORY[:KNOB=V1,V2,...]")
    p.add_argument("--threads", type=int, help="threads for numpy's OpenBLAS and FAISS (default: theirs)")
    p.add_argument("--workdir", default="/tmp/bench_gallery")
    p.add_argument("--keep", action="store_true", help="keep the feature file")
    a = p.parse_args()
    import faiss

    if a.threads:
        set_threads(a.threads)
    os.makedirs(a.workdir, exist_ok=True)
    path = os.path.join(a.workdir, f"features_{a.n}x{a.dim}.f16")
    gen = Generator(a.n, a.dim)
    print(
        f"{a.n} features x {a.dim}: {len(gen.views)} identities ({gen.views.mean():.1f} views on average), "
        f"{gen.n_distractors} distractors; {a.queries} queries; faiss {faiss.__version__}, "
        f"{faiss.omp_get_max_threads()} threads; numpy {np.__version__}, OpenBLAS {blas_info()}; "
        f"faiss's BLAS {faiss_blas_info()}; "
        f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}; load {os.getloadavg()}",
        flush=True,
    )
    if not os.path.exists(path):
        print(
            f"generated and written in {write_features(gen, path):.0f} s "
            f"({os.path.getsize(path) / 2**30:.1f} GB float16)",
            flush=True,
        )
    queries, query_ids = gen.queries(a.queries)
    exact, rows = bench_numpy(path, gen, queries, a.k, a.old)
    print(
        f"exact top-1 is the query's identity for {np.mean(gen.pids[exact[:, 0]] == query_ids):.1%} of queries",
        flush=True,
    )
    for r in rows:
        print(r, flush=True)
    rows.append(bench_flat(path, gen, queries, exact, a.k))
    print(rows[-1], flush=True)
    for spec in a.index:
        rows += bench_index(spec, path, gen, queries, exact, a.k)
        print(rows[-1], flush=True)
    flat = next(r["qps"] for r in rows if r["index"].startswith("exact FAISS"))
    gallery_gb = a.n * a.dim * 4 / 2**30
    print(f"\nload {os.getloadavg()}; gallery float32 {gallery_gb:.2f} GB\n")
    print(
        f"| index | knob | build s | index GB | queries/s ({a.queries} in one call) | × FAISS Flat | "
        f"recall@{a.k} | peak RSS in search GB (÷ gallery float32) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['index']} | {r['knob']} | {r['build']:.0f} | {r['size']:.2f} | {r['qps']:.1f} | "
            f"{r['qps'] / flat:.2f} | {r['recall']:.3f} | {r['peak']:.2f} ({r['peak'] / gallery_gb:.2f}) |"
        )
    if not a.keep:
        shutil.rmtree(a.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
