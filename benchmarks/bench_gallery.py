"""Gallery search at scale: FAISS approximate indexes vs exact search on 1,000,000 x 2048 features.

The features imitate re-ID embeddings: identities (2-10 views each, several
cameras) whose centres lie in a 256-d subspace grouped into appearance
clusters (people dressed alike), views spread around their centre plus
isotropic noise, and single-view distractors; all L2-normalised. Queries are
held-out views of gallery identities. The features are generated chunk by
chunk into a float16 file on disk (4 GB at 1M x 2048) and read back in chunks,
so the process stays far below the memory a float32 copy would take (8 GB).

Exact reference: inner products of all queries with each float32 chunk (one
BLAS matrix product per chunk) and a running top-k merge. Its queries/s counts
only that compute, not the disk reads. Each FAISS index is built with
`GalleryIndex(..., backend="faiss")` (first chunk, which trains it, then
`add` chunk by chunk) and searched with all queries in one call (queries/s)
and one query at a time (latency). recall@10 = |ANN top 10 ∩ exact top 10| / 10.

Usage:
    nice -n 10 python benchmarks/bench_gallery.py [--n 1000000] [--dim 2048] [--queries 1000] \
        [--index HNSW32,SQ8:efSearch=64,128 IVF1024,SQ8:nprobe=16,32] [--workdir /tmp/bench_gallery]
"""

import argparse
import os
import resource
import shutil
import time

import numpy as np

from keras_mmga.deploy import GalleryIndex

CHUNK = 50_000
LATENT = 256


def _rss_gb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30


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


def exact_topk(path, n, dim, queries, k):
    """Exact top-k rows by inner product, and the compute seconds (reads excluded)."""
    best_s = np.full((len(queries), k), -np.inf, np.float32)
    best_i = np.zeros((len(queries), k), np.int64)
    compute = 0.0
    for start in range(0, n, CHUNK):
        chunk = read_chunk(path, dim, start, min(start + CHUNK, n))
        t = time.perf_counter()
        s = queries @ chunk.T
        part = np.argpartition(-s, k - 1, axis=1)[:, :k]
        all_s = np.concatenate([best_s, np.take_along_axis(s, part, 1)], axis=1)
        all_i = np.concatenate([best_i, part + start], axis=1)
        order = np.argsort(-all_s, axis=1, kind="stable")[:, :k]
        best_s, best_i = np.take_along_axis(all_s, order, 1), np.take_along_axis(all_i, order, 1)
        compute += time.perf_counter() - t
    return best_i, compute


def parse_index(spec):
    """`"HNSW32,SQ8:efSearch=64,128"` -> ("HNSW32,SQ8", "efSearch", [64, 128])."""
    factory, _, knobs = spec.partition(":")
    if not knobs:
        return factory, None, [None]
    name, _, values = knobs.partition("=")
    return factory, name, [int(v) for v in values.split(",")]


def bench_index(spec, path, gen, queries, exact, k, single):
    factory, knob, values = parse_index(spec)
    rss0 = _rss_gb()
    t = time.perf_counter()
    first = min(CHUNK, gen.n)  # what an IVF / SQ / PCA index trains on
    build_knobs = {knob: values[0]} if knob else {}
    index = GalleryIndex(read_chunk(path, gen.dim, 0, first), [""] * first, gen.pids[:first], np.zeros(first),
                         backend="faiss", faiss_index=factory, **build_knobs)
    for start in range(first, gen.n, CHUNK):
        stop = min(start + CHUNK, gen.n)
        index.add(read_chunk(path, gen.dim, start, stop), [""] * (stop - start), gen.pids[start:stop],
                  np.zeros(stop - start))
    build = time.perf_counter() - t
    memory = _rss_gb() - rss0
    rows = []
    for value in values:
        if knob:
            index.set_search_knobs(**{knob: value})
        index.search(queries[:10], k)  # warm-up
        t = time.perf_counter()
        _, found = index.search(queries, k)
        batch = time.perf_counter() - t
        latencies = []
        for q in queries[:single]:
            t = time.perf_counter()
            index.search(q, k)
            latencies.append(time.perf_counter() - t)
        recall = np.mean([len(set(a) & set(b)) / k for a, b in zip(found, exact)])
        rows.append(dict(index=factory, knob=f"{knob}={value}" if knob else "-", build=build, memory=memory,
                         qps=len(queries) / batch, latency_ms=1000 * float(np.median(latencies)), recall=recall))
    del index
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=2048)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--single", type=int, default=100, help="queries timed one at a time (latency)")
    p.add_argument("--index", nargs="+", default=["HNSW32,SQ8:efSearch=32,64,128", "IVF1024,SQ8:nprobe=8,16,32"],
                   help="FACTORY[:KNOB=V1,V2,...]")
    p.add_argument("--workdir", default="/tmp/bench_gallery")
    p.add_argument("--keep", action="store_true", help="keep the feature file")
    a = p.parse_args()
    import faiss

    os.makedirs(a.workdir, exist_ok=True)
    path = os.path.join(a.workdir, f"features_{a.n}x{a.dim}.f16")
    gen = Generator(a.n, a.dim)
    print(f"{a.n} features x {a.dim}: {len(gen.views)} identities ({gen.views.mean():.1f} views on average), "
          f"{gen.n_distractors} distractors; {a.queries} queries; faiss {faiss.__version__}, "
          f"{faiss.omp_get_max_threads()} threads", flush=True)
    print(f"generated and written in {write_features(gen, path):.0f} s ({os.path.getsize(path) / 2**30:.1f} GB float16)",
          flush=True)
    queries, query_ids = gen.queries(a.queries)
    exact, compute = exact_topk(path, a.n, a.dim, queries, a.k)
    exact_qps = a.queries / compute
    same = np.mean(gen.pids[exact[:, 0]] == query_ids)
    print(f"exact (float32 BLAS, chunked): {exact_qps:.1f} queries/s; its top-1 is the query's identity for "
          f"{same:.1%} of queries", flush=True)
    rows = []
    for spec in a.index:
        rows += bench_index(spec, path, gen, queries, exact, a.k, a.single)
        print(rows[-1], flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"\npeak RSS {peak:.1f} GB\n")
    print(f"| index | knob | build s | index memory GB | queries/s (batch of {a.queries}) | x exact | "
          f"latency ms (1 query) | recall@{a.k} |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| exact (float32 matmul) | - | - | - | {exact_qps:.1f} | 1.0 | - | 1.000 |")
    for r in rows:
        print(f"| {r['index']} | {r['knob']} | {r['build']:.0f} | {r['memory']:.2f} | {r['qps']:.0f} | "
              f"{r['qps'] / exact_qps:.1f} | {r['latency_ms']:.2f} | {r['recall']:.3f} |")
    if not a.keep:
        shutil.rmtree(a.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
