"""Time of Market-scale evaluation: distance matrix + CMC/mAP/mINP.

Usage:
    python benchmarks/bench_rank.py [--noise 3.5]

3,368 queries × 15,913 gallery images, 2048-d L2-normalised features drawn as
identity centre + noise (751 identities + distractors, 6 cameras). `--noise`
sets how hard the problem is (1.5: near perfect; 3.5: mAP ≈ 0.58; 100: random,
the worst case for the metric code, which skips entries past the last match).
"""

import argparse
import time

import numpy as np

from keras_mmga.evaluation import compute_distance_matrix, evaluate_rank


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--noise", type=float, nargs="+", default=[1.5, 3.5, 100.0])
    args = parser.parse_args()
    rng = np.random.RandomState(0)
    centres = rng.normal(size=(752, 2048)).astype("float32")
    g_pids, g_cams = rng.randint(0, 752, 15913), rng.randint(0, 6, 15913)
    q_pids, q_cams = rng.randint(1, 752, 3368), rng.randint(0, 6, 3368)
    print("| noise | distances (s) | CMC/mAP/mINP (s) | total (s) | rank-1 | mAP |")
    print("|---|---|---|---|---|---|")
    for noise in args.noise:
        gf = centres[g_pids] + noise * rng.normal(size=(15913, 2048)).astype("float32")
        qf = centres[q_pids] + noise * rng.normal(size=(3368, 2048)).astype("float32")
        gf /= np.linalg.norm(gf, axis=1, keepdims=True)
        qf /= np.linalg.norm(qf, axis=1, keepdims=True)
        start = time.perf_counter()
        distmat = compute_distance_matrix(qf, gf)
        middle = time.perf_counter()
        result = evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams)
        end = time.perf_counter()
        print(f"| {noise} | {middle - start:.2f} | {end - middle:.2f} | {end - start:.2f} | "
              f"{result['cmc'][0]:.3f} | {result['mAP']:.3f} |")


if __name__ == "__main__":
    main()
