"""Masks from images: IoU against the synthetic set's ground truth, and images/s, vs the naive use of the model.

Usage:
    python benchmarks/bench_masks.py [--root /tmp/mmga_masks_bench] [--seed 1] [--train-ids 100]
                                     [--workers 2] [--pose-model PATH]

Writes a synthetic set (seed 1 by default: the parser's settings were chosen
on seed 0) and measures, in the same run:

- naive: one process, one interpreter (2 threads), the tight crop padded to a
  square, whole = segmentation > 0.5, upper / bottom split by a horizontal
  line at the mean hip height (the figures quoted in the issue);
- ours: `write_masks` (its default split of the cores into processes and
  interpreter threads) over the same images, from start-up to the last file
  written; then `write_masks` with `--compare-workers` processes on a third.

IoU per image of whole / upper / bottom vs the ground-truth LIP masks grouped
the default way (an image where no person is found counts as IoU 0); junk
crops (pid -1, no person) are left out of the IoU and counted apart. The naive
loop runs before and after ours, so a change of machine load shows.
"""

import argparse
import glob
import os
import shutil
import sys
import time

import cv2
import numpy as np

from keras_mmga.data.masks import group_label_map
from keras_mmga.data.synthetic import write_dataset
from keras_mmga.masks.pose_model import PoseModel, resolve_pose_model
from keras_mmga.masks.writer import default_workers, mask_relpath, usable_cores, write_masks


def _iou(a, b):
    union = (a | b).sum()
    return (a & b).sum() / union if union else 1.0


def naive_masks(model, image):
    """The issue's naive use: tight square crop, threshold, hip line."""
    h, w = image.shape[:2]
    side = max(h, w)
    oy, ox = (side - h) // 2, (side - w) // 2
    padded = np.zeros((side, side, 3), np.uint8)
    padded[oy : oy + h, ox : ox + w] = image
    x = cv2.resize(padded[..., ::-1], (256, 256), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255
    out = model.run(x)
    scale = 256 / side
    seg = cv2.resize(out["segmentation"], (side, side))[oy : oy + h, ox : ox + w]
    whole = seg > 0
    hip = out["landmarks"][[23, 24], 1].mean() / scale - oy
    rows = np.arange(h)[:, None]
    return np.stack([whole, whole & (rows < hip), whole & (rows >= hip)], axis=-1)


def naive_run(model_path, paths):
    model = PoseModel(model_path, num_threads=2)
    start = time.perf_counter()
    results = [naive_masks(model, cv2.imread(p)) for p in paths]
    return results, len(paths) / (time.perf_counter() - start)


def scores(paths, images, gt_root, predicted):
    rows, junk = [], []
    for path, pred in zip(paths, predicted):
        rel = os.path.relpath(path, images)
        gt = group_label_map(cv2.imread(os.path.join(gt_root, mask_relpath(rel)), cv2.IMREAD_UNCHANGED)) > 0
        if not gt[..., 0].any():
            junk.append(pred is not None and pred[..., 0].any())
            continue
        pred = np.zeros_like(gt) if pred is None else pred
        rows.append([_iou(pred[..., c], gt[..., c]) for c in range(3)])
    return np.array(rows), junk


def describe(name, table, junk):
    med, p10, mean = np.median(table, 0), np.percentile(table, 10, 0), table.mean(0)
    fmt = lambda v: " / ".join(f"{x:.3f}" for x in v)  # noqa: E731
    print(
        f"{name:6s} median {fmt(med)} | 10th pct {fmt(p10)} | mean {fmt(mean)} "
        f"| junk crops given a mask: {sum(junk)}/{len(junk)}"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="/tmp/mmga_masks_bench")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--train-ids", type=int, default=100)
    parser.add_argument("--workers", type=int, default=None, help="write_masks workers (default: its own)")
    parser.add_argument("--compare-workers", type=int, default=2, help="the other split of the cores, on a third")
    parser.add_argument("--pose-model", default=None)
    args = parser.parse_args()
    images = os.path.join(args.root, "images")
    gt_root = os.path.join(args.root, "masks")
    if not os.path.isdir(images):
        write_dataset(
            args.root, num_train_ids=args.train_ids, num_test_ids=20, seed=args.seed, num_distractors=0, num_junk=10
        )
    paths = sorted(glob.glob(os.path.join(images, "*", "*.jpg")))
    model_path = resolve_pose_model(args.pose_model)
    print(
        f"{len(paths)} images {cv2.imread(paths[0]).shape[:2]}, cpus {os.cpu_count()}, "
        f"load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )

    naive, naive_rate = naive_run(model_path, paths)
    out = os.path.join(args.root, "generated")
    shutil.rmtree(out, ignore_errors=True)
    load = os.getloadavg()[0]
    summary = write_masks(images, out, pose_model=model_path, workers=args.workers, verbose=False)
    ours_rate = summary["images_per_second"]
    third = paths[: len(paths) // 3]
    out1 = os.path.join(args.root, "generated_compare")
    shutil.rmtree(out1, ignore_errors=True)
    one = write_masks(
        images,
        out1,
        pose_model=model_path,
        workers=args.compare_workers,
        verbose=False,
        images_list=[os.path.relpath(p, images) for p in third],
    )
    _, naive_rate_after = naive_run(model_path, third)

    cores = usable_cores()
    workers = args.workers or default_workers()
    ours = []
    for p in paths:
        f = os.path.join(out, mask_relpath(os.path.relpath(p, images)))
        ours.append(group_label_map(cv2.imread(f, cv2.IMREAD_UNCHANGED)) > 0 if os.path.exists(f) else None)
    print(f"IoU vs ground truth, whole / upper / bottom (persons: {sum(1 for p in paths if '/-1_' not in p)}):")
    describe("naive", *scores(paths, images, gt_root, naive))
    table, junk = scores(paths, images, gt_root, ours)
    describe("ours", table, junk)
    print(f"ours: no person found in {summary['no_person']} images, low confidence {summary['low_confidence']}")
    print(
        f"speed at {cv2.imread(paths[0]).shape[0]}x{cv2.imread(paths[0]).shape[1]}: naive per-image loop "
        f"(1 process, 2 threads) {naive_rate:.1f} images/s before, {naive_rate_after:.1f} after; "
        f"write_masks ({workers} workers x {cores // workers} threads, start-up and PNG writing included, "
        f"load average {load:.2f}) "
        f"{ours_rate:.1f} images/s = {ours_rate / naive_rate:.2f}x the naive loop before, "
        f"{ours_rate / naive_rate_after:.2f}x after; after its {summary['startup_seconds']:.1f} s start-up "
        f"{summary['steady_images_per_second']:.1f} images/s; write_masks ({args.compare_workers} workers x "
        f"{max(1, cores // args.compare_workers)} threads, "
        f"on a third of the images) {one['images_per_second']:.1f} images/s, after its "
        f"{one['startup_seconds']:.1f} s start-up {one['steady_images_per_second']:.1f}"
    )
    print(f"Market-1501 (36,036 images) at this rate: {36036 / ours_rate / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
