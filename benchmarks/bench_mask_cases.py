"""Masks on hard cases with known ground truth: people cut by the frame, and dark clothes on dark backgrounds.

Usage:
    python benchmarks/bench_mask_cases.py [--root /tmp/mmga_mask_cases] [--count 150] [--seed 5]
                                          [--pose-model PATH] [--skeleton-threshold 0]

Writes the cases once (`root/cases.npz`, made with this checkout's
`keras_mmga.data.synthetic_people`), then parses them with whichever
`keras_mmga` is imported, so the same file scores an older checkout (run it
with that checkout on PYTHONPATH once the cases exist):

- cuts: synthetic people wholly in the frame (hair and shoes inside), cut at
  the waist (the top row of the trousers / skirt: no bottom in view), the
  knees (no feet), and the shoulders (below the head: no head);
- dark: people in near-black clothes on dark backgrounds (`draw_dark_person`).

Per case: median IoU of whole / upper / bottom vs the ground truth grouped
the default way (an empty ground truth and an empty prediction score 1),
the share of crops where the out-of-frame part got any pixel (waist: bottom
labels, knees: shoes 18/19, shoulders: hair / face 2/13; goal 0 %), and the
share where the parser reported it absent (its channel then weighs 0), the
median share of the person's pixels missing from the whole mask, and the
share of crops with a hole in the whole mask (person pixels missed and
enclosed by the mask) of at least 2 % of the person. `--skeleton-threshold 0`
turns the parser's skeleton fill off (the "no fill" rows of the dark case).
"""

import argparse
import os
import time

import cv2
import numpy as np

from keras_mmga.data.masks import group_label_map

BOTTOM_IDS = (9, 12, 16, 17, 18, 19)
OUT_OF_FRAME = {"waist": BOTTOM_IDS, "knees": (18, 19), "shoulders": (2, 13)}


def _rows(labels, ids):
    """Indices of the rows of a label map that hold any of `ids`."""
    return np.nonzero(np.isin(labels, ids).any(axis=1))[0]


def make_cases(path, count, seed):
    from keras_mmga.data.synthetic_people import draw_dark_person, draw_person, make_camera, make_identity

    rng = np.random.RandomState(seed)
    cases = {"waist": [], "knees": [], "shoulders": [], "dark": []}
    while len(cases["waist"]) < count:
        image, lab = draw_person(rng, make_identity(rng), make_camera(rng))
        head, bottom, shoes = (_rows(lab, ids) for ids in ((2, 13), (9, 12), (18, 19)))
        if not len(head) or not len(bottom) or not len(shoes) or head[0] == 0 or shoes[-1] >= lab.shape[0] - 1:
            continue
        waist = int(bottom[0])
        knee = int(waist + 0.45 * (shoes[0] - waist))
        below_head = int(head[-1]) + 1
        for name, sl in (("waist", slice(0, waist)), ("knees", slice(0, knee)), ("shoulders", slice(below_head, None))):
            sub = lab[sl].copy()
            if name == "knees":
                sub[np.isin(sub, (18, 19))] = 0  # shoes reaching above the cut are not in view either
            cases[name].append((np.ascontiguousarray(image[sl]), sub))
    while len(cases["dark"]) < count:
        cases["dark"].append(draw_dark_person(rng))
    arrays = {}
    for name, items in cases.items():
        for i, (img, lab) in enumerate(items):
            arrays[f"{name}_{i}_image"], arrays[f"{name}_{i}_labels"] = img, lab
    np.savez_compressed(path, **arrays)


def _iou(a, b):
    union = (a | b).sum()
    return (a & b).sum() / union if union else 1.0


def _holes(mask):
    """Pixels outside `mask` that it encloses (not reachable from the image border through non-mask pixels)."""
    outside = np.pad(~mask, 1, constant_values=True).astype(np.uint8)
    cv2.floodFill(outside, None, (0, 0), 0)
    return outside[1:-1, 1:-1].astype(bool)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="/tmp/mmga_mask_cases")
    parser.add_argument("--count", type=int, default=150)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--pose-model", default=None)
    parser.add_argument("--skeleton-threshold", type=float, default=None, help="the parser's (0: no fill)")
    args = parser.parse_args()
    os.makedirs(args.root, exist_ok=True)
    path = os.path.join(args.root, f"cases_{args.seed}_{args.count}.npz")
    if not os.path.exists(path):
        make_cases(path, args.count, args.seed)
    from keras_mmga.masks.parser import BodyPartParser

    options = {} if args.skeleton_threshold is None else {"skeleton_threshold": args.skeleton_threshold}
    body_parser = BodyPartParser(args.pose_model, num_threads=2, **options)
    data = np.load(path)
    print(f"load average {os.getloadavg()[0]:.2f}; {args.count} crops per case (seed {args.seed})")
    print(
        "| case | median IoU whole / upper / bottom | 10th pct whole | out-of-frame part labelled | "
        "reported absent | no person | median missed person pixels | hole >= 2 % of the person |"
    )
    print("|---|---|---|---|---|---|---|---|")
    start, n = time.perf_counter(), 0
    for name in ("waist", "knees", "shoulders", "dark"):
        ious, labelled, absent, none, missed, holed = [], 0, 0, 0, [], 0
        for i in range(args.count):
            image, lab = data[f"{name}_{i}_image"], data[f"{name}_{i}_labels"]
            result = body_parser.parse(image)
            n += 1
            pred_map = result.label_map
            none += not result.person
            gt = group_label_map(lab) > 0
            pred = group_label_map(pred_map) > 0
            ious.append([_iou(pred[..., c], gt[..., c]) for c in range(3)])
            person = gt[..., 0]
            missed.append(float((person & ~pred[..., 0]).sum() / max(person.sum(), 1)))
            holed += result.person and (person & _holes(pred[..., 0])).sum() >= 0.02 * person.sum()
            if name in OUT_OF_FRAME:
                ids = OUT_OF_FRAME[name]
                labelled += bool(np.isin(pred_map, ids).any())
                reported = set(getattr(result, "absent", ()))
                absent += result.person and set(ids) & {2, 5, 9, 13, 14, 15, 16, 17, 18, 19} <= reported | {12}
        ious = np.array(ious)
        med = " / ".join(f"{v:.3f}" for v in np.median(ious, axis=0))
        share = lambda k: f"{100 * k / args.count:.0f} %"  # noqa: E731
        oof = share(labelled) if name in OUT_OF_FRAME else "-"
        rep = share(absent) if name in OUT_OF_FRAME else "-"
        print(
            f"| {name} | {med} | {np.percentile(ious[:, 0], 10):.3f} | {oof} | {rep} | {none} | "
            f"{np.median(missed):.3f} | {share(holed)} |",
            flush=True,
        )
    print(f"parse rate {n / (time.perf_counter() - start):.1f} images/s (1 process, 2 threads)")


if __name__ == "__main__":
    main()
