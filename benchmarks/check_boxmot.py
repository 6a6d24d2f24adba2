"""Step 2 of the BoxMOT check: BoxMOT's own code loads the exports and tracks with them (PyTorch venv, no TensorFlow).

Run benchmarks/prepare_boxmot_check.py first (this package's venv); then, in a
venv with `pip install boxmot==25.0.0 onnxruntime ai-edge-litert`:

    python benchmarks/check_boxmot.py --dir /tmp/boxmot_check

1. Features: `boxmot.reid.backends.onnx_backend.ONNXBackend` and
   `tflite_backend.TFLiteBackend` load `mmga_boxmot.onnx` / `.tflite` /
   `_int8.tflite` unchanged and compute the features of the person boxes of the
   real frames with `get_features(xyxy, bgr_frame)`: BoxMOT crops, resizes,
   normalises and L2-normalises itself. Each is compared with the package's
   features of the same boxes (Keras, and the package's ONNX Runtime extractor):
   cosine per box, min and mean.
2. Tracking: BoT-SORT with the ONNXBackend of `mmga_boxmot.onnx` as its re-ID
   on the synthetic sequences ("cross", "bounce"), detections = ground-truth boxes (conf 0.9) of the people that are
   at least half visible. For every person: the track ids it was given, the
   id switches (consecutive visible frames with different ids) and whether it
   took an id another person had first (a swap, not just a new id). The same
   run without appearance (`use_embeddings=False`) is printed beside it.
"""

import argparse
import json
from pathlib import Path

import numpy as np


def cosine(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def iou(a, b):
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def features(backend, ref):
    out = np.zeros_like(ref["keras"])
    for i in np.unique(ref["frame_of"]):
        rows = np.nonzero(ref["frame_of"] == i)[0]
        out[rows] = backend.get_features(ref["boxes"][rows], ref[f"frame_{i}"])
    return out


def track(seq, weights, tracker_class="BotSort", **tracker_kwargs):
    """A BoxMOT tracker over `seq` with BoxMOT's ONNXBackend of `weights`; per person: ids, switches; re-ID calls."""
    import boxmot
    import torch
    from boxmot.reid.backends.onnx_backend import ONNXBackend

    backend = ONNXBackend(weights, torch.device("cpu"), False)
    calls = {"calls": 0, "crops": 0}
    get_features = backend.get_features

    def counted(boxes, image):  # proves the tracker ran the MMGA re-ID, and how often
        calls["calls"] += 1
        calls["crops"] += len(boxes)
        return get_features(boxes, image)

    backend.get_features = counted
    tracker = getattr(boxmot, tracker_class)(reid_model=backend, device="cpu", half=False, **tracker_kwargs)
    frames, boxes, visible = seq["frames"], seq["boxes"], seq["visible"]
    ids = np.full(visible.shape, -1, int)  # ids[f, person]: the track id the tracker reported, -1 none
    for f in range(len(frames)):
        people = np.nonzero(visible[f])[0]
        dets = np.concatenate([boxes[f, people], np.full((len(people), 1), 0.9), np.zeros((len(people), 1))], 1)
        out = tracker.update(dets.astype(np.float32), frames[f])
        for row in np.asarray(out).reshape(-1, out.shape[-1] if np.ndim(out) == 2 else 8):
            best = max(people, key=lambda q: iou(row[:4], boxes[f, q]), default=None)
            if best is not None and iou(row[:4], boxes[f, best]) > 0.5:
                ids[f, best] = int(row[4])
    owner = {}  # track id -> the person it was first given to
    for f in range(len(frames)):
        for q in range(visible.shape[1]):
            if ids[f, q] >= 0:
                owner.setdefault(int(ids[f, q]), q)
    report = {}
    for q in range(visible.shape[1]):
        seen = [int(i) for i in ids[:, q] if i >= 0]
        switches = sum(1 for x, y in zip(seen, seen[1:]) if x != y)
        report[f"person_{q}"] = {
            "detected_frames": int(visible[:, q].sum()),
            "tracked_frames": len(seen),
            "ids": sorted(set(seen)),
            "id_switches": switches,
            "kept_id": len(set(seen)) == 1,
            # switches to an id another person had first (a swap), vs to a new id
            "took_another_persons_id": sum(owner[i] != q for i in set(seen)),
        }
    return {"people": report, "reid": calls}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", required=True, help="the --out folder of prepare_boxmot_check.py")
    a = p.parse_args(argv)

    import sys

    import boxmot
    import torch
    from boxmot.reid.backends.onnx_backend import ONNXBackend
    from boxmot.reid.backends.tflite_backend import TFLiteBackend

    assert "tensorflow" not in sys.modules
    folder = Path(a.dir)
    ref = dict(np.load(folder / "reference.npz"))
    results = {
        "boxmot": boxmot.__version__,
        "torch": torch.__version__,
        "boxes": int(len(ref["boxes"])),
        "frames": [str(x) for x in ref["names"]],
        "features": {},
    }
    backends = {
        "ONNXBackend mmga_boxmot.onnx": (ONNXBackend, "mmga_boxmot.onnx"),
        "TFLiteBackend mmga_boxmot.tflite": (TFLiteBackend, "mmga_boxmot.tflite"),
        "TFLiteBackend mmga_boxmot_int8.tflite": (TFLiteBackend, "mmga_boxmot_int8.tflite"),
    }
    for label, (cls, name) in backends.items():
        backend = cls(folder / name, torch.device("cpu"), False)
        got = features(backend, ref)
        row = {"input_shape": list(backend.input_shape), "model_name": backend.model_name}
        for against in ("keras", "extractor"):
            c = cosine(got, ref[against])
            row[f"cosine_vs_{against}"] = {
                "min": float(c.min()),
                "mean": float(c.mean()),
                "per_box": [round(float(x), 6) for x in c],
            }
        results["features"][label] = row
        print(
            f"{label}: input {row['input_shape']}, model_name {row['model_name']!r}; cosine vs Keras min "
            f"{row['cosine_vs_keras']['min']:.7f} mean {row['cosine_vs_keras']['mean']:.7f}; vs the package's "
            f"extractor min {row['cosine_vs_extractor']['min']:.7f}"
        )
    c = cosine(ref["extractor"], ref["keras"])
    print(f"(package extractor vs Keras: min cosine {c.min():.7f})")

    results["tracking"] = {}
    for scenario in ("cross", "bounce"):
        path = folder / ("sequence.npz" if scenario == "cross" else f"sequence_{scenario}.npz")
        if not path.exists():
            continue
        seq = dict(np.load(path))
        results["tracking"][scenario] = {
            "frames": int(len(seq["frames"])),
            "people": int(seq["visible"].shape[1]),
            "hidden_detections": int((~seq["visible"]).sum()),
            "botsort_mmga_reid": track(seq, folder / "mmga_boxmot.onnx"),
            "botsort_no_reid": track(seq, folder / "mmga_boxmot.onnx", use_embeddings=False),
            "strongsort_mmga_reid": track(seq, folder / "mmga_boxmot.onnx", "StrongSort"),
        }
        for label in ("botsort_mmga_reid", "botsort_no_reid", "strongsort_mmga_reid"):
            run = results["tracking"][scenario][label]
            report = run["people"]
            kept = sum(r["kept_id"] for r in report.values())
            switches = sum(r["id_switches"] for r in report.values())
            swaps = sum(r["took_another_persons_id"] > 0 for r in report.values())
            print(
                f"[{scenario}] {label}: re-ID called {run['reid']['calls']} times on {run['reid']['crops']} boxes; "
                f"{kept}/{len(report)} people kept one id, {switches} id switches, {swaps} people took "
                f"another person's id; "
                + "; ".join(
                    f"{k}: ids {r['ids']} over {r['tracked_frames']}/{r['detected_frames']} frames"
                    for k, r in report.items()
                )
            )
    with open(folder / "boxmot_results.json", "w") as f:
        json.dump(results, f, indent=1)
    print(f"wrote {folder / 'boxmot_results.json'}")
    ok = all(r["cosine_vs_keras"]["min"] >= 0.9999 for k, r in results["features"].items() if "int8" not in k)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
