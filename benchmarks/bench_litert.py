"""images/s of the LiteRT (.tflite) float32, float16 and int8 exports beside ONNX Runtime, in one run.

Times the files benchmarks/prepare_boxmot_check.py writes (the same network:
`mmga_boxmot.onnx`, `mmga_boxmot.tflite`, `mmga_boxmot_fp16.tflite` when present, `mmga_boxmot_int8.tflite`, plus any
`--extra NAME=PATH.onnx|.tflite`), on the same random input, batches 1 and 16,
2 threads each. The runtimes take turns round by round so that a change in
machine load hits all of them alike; the figure is the median round. The
machine load (`uptime`) is printed beside it.

    PYTHONPATH=$PWD python benchmarks/bench_litert.py --dir /tmp/boxmot_check --rounds 5
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def _runner(path, threads):
    if path.endswith(".onnx"):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        name, shape = session.get_inputs()[0].name, session.get_inputs()[0].shape
        return (lambda x: session.run(None, {name: x})[0]), shape[1:]
    from keras_mmga.export.tflite_export import interpreter, run_tflite

    it = interpreter(path, num_threads=threads)
    return (lambda x: run_tflite(it, x)), list(it.get_input_details()[0]["shape"][1:])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", required=True)
    p.add_argument("--extra", nargs="*", default=[], help="NAME=PATH more files to time")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--images-per-round", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)

    files = {
        "ONNX Runtime float32": "mmga_boxmot.onnx",
        "LiteRT float32": "mmga_boxmot.tflite",
        "LiteRT float16": "mmga_boxmot_fp16.tflite",
        "LiteRT int8": "mmga_boxmot_int8.tflite",
    }
    # float16 only where prepare_boxmot_check.py wrote it (older check folders have none).
    files = {
        k: os.path.join(a.dir, v)
        for k, v in files.items()
        if "float16" not in k or os.path.isfile(os.path.join(a.dir, v))
    }
    files.update(dict(e.split("=", 1) for e in a.extra))
    runners = {k: _runner(v, a.threads) for k, v in files.items()}
    print(f"uptime before: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    rng = np.random.RandomState(0)
    table = {}
    for batch in a.batches:
        times = {k: [] for k in runners}
        inputs = {k: rng.normal(size=(batch, *shape)).astype(np.float32) for k, (_, shape) in runners.items()}
        for k, (run, _) in runners.items():
            run(inputs[k])  # warm-up (allocation, XNNPACK packing)
        calls = max(1, a.images_per_round // batch)
        for _ in range(a.rounds):
            for k, (run, _) in runners.items():
                start = time.perf_counter()
                for _ in range(calls):
                    run(inputs[k])
                times[k].append(calls * batch / (time.perf_counter() - start))
        table[batch] = {k: statistics.median(v) for k, v in times.items()}
    print(f"uptime after: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    names = list(runners)
    print("| batch | " + " | ".join(f"{n} (images/s)" for n in names) + " |")
    print("|---|" + "---|" * len(names))
    for batch, row in table.items():
        print(f"| {batch} | " + " | ".join(f"{row[n]:.1f}" for n in names) + " |")
    sizes = {n: os.path.getsize(files[n]) / 2**20 for n in names}
    print("file MiB: " + ", ".join(f"{n} {s:.1f}" for n, s in sizes.items()))


if __name__ == "__main__":
    main()
