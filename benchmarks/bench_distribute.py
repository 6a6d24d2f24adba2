"""Training-step time of MMGA on one device vs MirroredStrategy replicas, float32 or mixed precision.

Usage:
    python benchmarks/bench_distribute.py                  # 1 vs 2 logical CPU devices, each in its own process
    python benchmarks/bench_distribute.py --replicas 2     # one configuration
    python benchmarks/bench_distribute.py --batch 96 --height 384 --width 128 --mixed-precision   # on a GPU

On a CPU machine `--replicas N` splits the CPU into N logical devices (the
same cores: this measures the cost of the replicated step, all-reduces,
synchronised BatchNorm and the all-gathered triplet, not a speed-up). With a
GPU the model runs on it (one replica per visible GPU). Each configuration runs
in a fresh process because TensorFlow fixes its devices at start-up. The step
is timed by `bench_model.step_time`: random images and masks, two warm-up steps
(tracing), then the median of `--steps` steps each timed on its own.
"""

import argparse
import json
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def measure(args):
    import tensorflow as tf

    from keras_mmga.backends import distribute
    from keras_mmga.engine.trainer import mixed_precision_policy

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        strategy = distribute.make_strategy("mirrored" if len(gpus) > 1 else "one")
    elif args.replicas > 1:
        tf.config.set_logical_device_configuration(
            tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * args.replicas
        )
        strategy = distribute.make_strategy("mirrored", [f"/cpu:{i}" for i in range(args.replicas)])
    else:
        strategy = distribute.make_strategy("one")
    policy = mixed_precision_policy() if args.mixed_precision else None
    from bench_model import step_time  # same measurement, beside this script

    seconds = step_time(
        args.variant,
        args.batch,
        args.height,
        args.width,
        args.steps,
        strategy=strategy,
        dtype=policy,
        cross_replica_triplet=not args.per_replica_triplet,
    )
    return {
        "device": "GPU" if gpus else "CPU",
        "replicas": strategy.num_replicas_in_sync,
        "precision": policy or "float32",
        "triplet mining": "per replica" if args.per_replica_triplet else "global",
        "s/step": round(seconds, 3),
        "images/s": round(args.batch / seconds, 1),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, help="one configuration (default: 1 and 2, each in a subprocess)")
    parser.add_argument("--variant", default="mmga")
    parser.add_argument("--batch", type=int, default=32, help="global batch, a multiple of 4 × replicas")
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--mixed-precision", action="store_true")
    parser.add_argument("--per-replica-triplet", action="store_true")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.replicas is not None:
        result = measure(args)
        print(json.dumps(result) if args.json else result)
        return
    rows = []
    for replicas in (1, 2):
        command = [sys.executable, __file__, "--json", "--replicas", str(replicas)] + [
            a for a in sys.argv[1:] if a != "--json"
        ]
        out = subprocess.run(command, capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    keys = list(rows[0])
    print(f"MMGA {args.variant}, batch {args.batch}, {args.height}x{args.width}, {args.steps} timed steps")
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(str(row[k]) for k in keys) + " |")


if __name__ == "__main__":
    main()
