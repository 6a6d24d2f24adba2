"""Time of Market-scale evaluation: distance matrix + CMC/mAP/mINP.

Usage:
    python benchmarks/bench_rank.py                      # float32 and bfloat16 distances, noise 3.5
    python benchmarks/bench_rank.py --noise 1.5 3.5 100 --repeats 3

3,368 queries × 15,913 gallery images, 2048-d L2-normalised features drawn as
identity centre + noise: 751 test identities plus distractors (pid 0), 6
cameras, every query's identity present in the gallery (Market-1501's sizes).
`--noise` sets how hard the problem is (1.5: near perfect; 3.5: mAP ≈ 0.58,
close to an untrained-to-moderate model; 100: random features, the worst case
for `rank_metrics`, which only looks at entries up to each query's farthest
true match).

Also times a naive torchreid-style loop (full `np.argsort` of every row, then
a per-query Python loop) on `--naive-queries` queries and extrapolates it to
all 3,368, and checks that both give the same metrics on that subset.
Wall time is reported together with process CPU time: on a shared machine the
wall time grows with the other load, CPU time much less.
"""

import argparse
import os
import time

import numpy as np

from keras_mmga.evaluation import compute_distance_matrix, rank_metrics

NUM_Q, NUM_G, DIM, NUM_IDS, NUM_CAMS = 3368, 15913, 2048, 751, 6


def market_like(noise, rng):
    """Features, pids and cameras shaped like Market-1501's query / gallery split."""
    centres = rng.normal(size=(NUM_IDS + 1, DIM)).astype("float32")  # row 0: the distractors' "identity"
    # Gallery: every test identity has images (~17 on average, 6 cameras), plus 2,793 distractors.
    num_distractors = 2793
    g_pids = np.concatenate(
        [
            np.arange(1, NUM_IDS + 1),
            rng.randint(1, NUM_IDS + 1, NUM_G - NUM_IDS - num_distractors),
            np.zeros(num_distractors, int),
        ]
    )
    g_cams = rng.randint(0, NUM_CAMS, NUM_G)
    q_pids, q_cams = rng.randint(1, NUM_IDS + 1, NUM_Q), rng.randint(0, NUM_CAMS, NUM_Q)
    g_noise = np.where(g_pids[:, None] == 0, 10.0, noise)  # distractors: far from every identity
    gf = centres[g_pids] + (g_noise * rng.normal(size=(NUM_G, DIM))).astype("float32")
    qf = centres[q_pids] + (noise * rng.normal(size=(NUM_Q, DIM))).astype("float32")
    gf /= np.linalg.norm(gf, axis=1, keepdims=True)
    qf /= np.linalg.norm(qf, axis=1, keepdims=True)
    return qf.astype("float32"), gf.astype("float32"), q_pids, g_pids, q_cams, g_cams


def naive_eval(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50):
    """torchreid's `eval_market1501` logic (full argsort, per-query loop), for timing and checking."""
    indices = np.argsort(distmat, axis=1)
    matches = (g_pids[indices] == q_pids[:, None]).astype(np.int32)
    all_cmc, all_ap, all_inp = [], [], []
    for i in range(len(q_pids)):
        order = indices[i]
        keep = ~((g_pids[order] == q_pids[i]) & (g_camids[order] == q_camids[i]))
        raw = matches[i][keep]
        if not raw.any():
            continue
        cmc = raw.cumsum()
        pos_max = np.flatnonzero(raw).max()  # the last (hardest) true match
        all_inp.append(cmc[pos_max] / (pos_max + 1.0))
        cmc[cmc > 1] = 1
        all_cmc.append(cmc[:max_rank])
        tmp = raw.cumsum() / (np.arange(raw.size) + 1.0) * raw
        all_ap.append(tmp.sum() / raw.sum())
    return np.mean(all_cmc, axis=0), float(np.mean(all_ap)), float(np.mean(all_inp))


def timed(fn, *args, **kwargs):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--noise", type=float, nargs="+", default=[3.5])
    parser.add_argument("--precision", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--repeats", type=int, default=2, help="best of N")
    parser.add_argument("--naive-queries", type=int, default=200)
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    print(
        "| noise | precision | distances wall / CPU (s) | rank_metrics wall / CPU (s) | total wall (s) "
        "| rank-1 | mAP | mINP |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for noise in args.noise:
        qf, gf, q_pids, g_pids, q_cams, g_cams = market_like(noise, np.random.RandomState(0))
        reference = None
        for precision in args.precision:
            best = None
            for _ in range(args.repeats):
                distmat, d_wall, d_cpu = timed(compute_distance_matrix, qf, gf, precision=precision)
                result, r_wall, r_cpu = timed(rank_metrics, distmat, q_pids, g_pids, q_cams, g_cams)
                if best is None or d_wall + r_wall < best[0] + best[2]:
                    best = (d_wall, d_cpu, r_wall, r_cpu)
            d_wall, d_cpu, r_wall, r_cpu = best
            print(
                f"| {noise} | {precision} | {d_wall:.2f} / {d_cpu:.2f} | {r_wall:.2f} / {r_cpu:.2f} | "
                f"{d_wall + r_wall:.2f} | {result['cmc'][0]:.4f} | {result['mAP']:.4f} | {result['mINP']:.4f} |"
            )
            if precision == "float32":
                reference = distmat, result
        if reference is None or not args.naive_queries:
            continue
        distmat, result = reference
        n = min(args.naive_queries, NUM_Q)
        sub = (distmat[:n], q_pids[:n], g_pids, q_cams[:n], g_cams)
        (cmc, mAP, mINP), n_wall, _ = timed(naive_eval, *sub)
        fast = rank_metrics(*sub)
        same = np.allclose(fast["cmc"], cmc) and np.isclose(fast["mAP"], mAP) and np.isclose(fast["mINP"], mINP)
        _, f_wall, _ = timed(rank_metrics, *sub)
        print(
            f"\nnoise {noise}: naive torchreid-style loop {n_wall:.2f} s for {n} queries "
            f"-> {n_wall * NUM_Q / n:.1f} s extrapolated to {NUM_Q} (rank_metrics on the same {n}: "
            f"{f_wall:.3f} s); same metrics: {same}"
        )


if __name__ == "__main__":
    main()
