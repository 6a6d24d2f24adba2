"""int8 settings on trained checkpoints: cosine vs float32, rank-1 / mAP, images/s vs float32.

For each checkpoint the float32 ONNX is exported once; each setting (target, calibration
method, which nodes stay float) is quantised from it, calibrated on `--calibration-count`
training images of the synthetic set, and measured on the same images (cosine), on the
synthetic query / gallery split (rank-1 / mAP, flip-averaged, as `evaluate`) and for speed:
float32 and the int8 model timed alternately at batch 32 in one process (ratios only).

    PYTHONPATH=$PWD heavy python benchmarks/bench_int8.py --data /tmp/i23/data/images \
        --models /tmp/i23/demo64.keras [...] --settings tensorrt:minmax:attention onnxruntime:minmax:tail
"""

import argparse
import json
import os
import tempfile
import time

import numpy as np

from keras_mmga.export.int8 import _session, calibration_paths, compare, load_images, quantize, rank_accuracy


def _speed(paths, images, repeats=5):
    sessions = {name: _session(p) for name, p in paths.items()}
    batch = images[:32] if len(images) >= 32 else np.concatenate([images] * (32 // len(images) + 1))[:32]
    for s in sessions.values():
        s.run(["features"], {"images": batch})
    best = {name: float("inf") for name in sessions}
    for _ in range(repeats):  # alternate, so load changes hit both
        for name, s in sessions.items():
            t = time.perf_counter()
            s.run(["features"], {"images": batch})
            best[name] = min(best[name], time.perf_counter() - t)
    return {name: 32 / t for name, t in best.items()}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="synthetic set root (bounding_box_train, query, bounding_box_test)")
    p.add_argument("--models", nargs="+", required=True)
    p.add_argument(
        "--settings",
        nargs="+",
        default=[
            "onnxruntime:minmax:tail",
            "tensorrt:minmax:tail",
            "tensorrt:minmax:attention",
            "tensorrt:percentile:attention",
            "tensorrt:minmax:attention+stem",
        ],
    )
    p.add_argument("--calibration-count", type=int, default=128)
    p.add_argument("--json", help="also write the rows here")
    a = p.parse_args()
    from keras_mmga.export import export_onnx

    rows = []
    tmp = tempfile.mkdtemp(prefix="bench_int8_")
    for model in a.models:
        fp32 = os.path.join(tmp, os.path.basename(model) + ".onnx")
        info = export_onnx(model, fp32, write_card=False)
        size = tuple(info["input_shape"][1:3])
        images = load_images(calibration_paths(os.path.join(a.data, "bounding_box_train"), a.calibration_count), size)
        base = rank_accuracy({"float32": fp32}, a.data)["float32"]
        print(f"{model} {size}: float32 rank-1 {base['rank1']:.1f} mAP {base['mAP']:.1f}", flush=True)
        for setting in a.settings:
            target, method, keep = setting.split(":")
            out = os.path.join(tmp, "q.onnx")
            t = time.perf_counter()
            quantize(fp32, out, images, True, target, method, keep)
            seconds = time.perf_counter() - t
            cos = compare(fp32, out, images)
            rank = rank_accuracy({"int8": out}, a.data)["int8"]
            speed = _speed({"float32": fp32, "int8": out}, images)
            row = {
                "model": os.path.basename(model),
                "size": size,
                "setting": setting,
                "cos_mean": cos["mean"],
                "cos_min": cos["min"],
                "rank1": rank["rank1"],
                "mAP": rank["mAP"],
                "fp32_rank1": base["rank1"],
                "fp32_mAP": base["mAP"],
                "speedup": speed["int8"] / speed["float32"],
                "fp32_ips": speed["float32"],
                "int8_ips": speed["int8"],
                "quantise_s": seconds,
            }
            rows.append(row)
            print(
                f"  {setting:32s} cos {cos['mean']:.4f} / min {cos['min']:.4f}  rank-1 {rank['rank1']:.1f} "
                f"mAP {rank['mAP']:.1f}  {speed['int8']:.1f} vs {speed['float32']:.1f} img/s "
                f"(x{row['speedup']:.2f})",
                flush=True,
            )
            os.remove(out)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
