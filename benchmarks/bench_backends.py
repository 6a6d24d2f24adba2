"""Training-step time of MMGA on the TensorFlow and the JAX backend, same batch, same machine.

Usage:
    python benchmarks/bench_backends.py [--variant mmga] [--batch 32] [--height 128] [--width 64] [--steps 6]
        [--rounds 2]

Each backend runs in its own process (Keras fixes its backend at import), in
alternation, `--rounds` times, so that a machine that gets busier or quieter
shows up in both. A run trains the same random batch (batch // 4 identities
x 4 images, random masks, backbone_weights=None) for 2 warm-up steps (tracing
and compilation) and then `--steps` timed steps; each step's time waits for
its loss to be ready (JAX dispatches asynchronously). Printed: the median
seconds per step of each backend and JAX / TensorFlow.
"""

import argparse
import json
import os
import subprocess
import sys

_WARMUP_STEPS = 2


def _one_run(args):
    """Runs inside the child process: the backend is already chosen by KERAS_BACKEND."""
    import keras
    import numpy as np
    from step_timer import StepTimer

    from keras_mmga import MMGA

    keras.utils.set_random_seed(0)
    model = MMGA(args.batch // 4, variant=args.variant, input_shape=(args.height, args.width, 3), backbone_weights=None)
    model.compile(steps_per_epoch=args.steps + _WARMUP_STEPS)
    rng = np.random.RandomState(0)
    x = rng.uniform(0, 255, (args.batch, args.height, args.width, 3)).astype("float32")
    y = {
        "labels": np.repeat(np.arange(args.batch // 4), 4).astype("int32"),
        "masks": (rng.rand(args.batch, args.height // 16, args.width // 16, 3) > 0.5).astype("float32"),
    }
    n = args.steps + _WARMUP_STEPS
    # The same batch n times, one fit call (a second call could recompile inside the timed window).
    xs, ys = np.concatenate([x] * n), {k: np.concatenate([v] * n) for k, v in y.items()}
    timer = StepTimer()
    model.fit(xs, ys, batch_size=args.batch, shuffle=False, epochs=1, verbose=0, callbacks=[timer])
    return float(np.median(timer.seconds[_WARMUP_STEPS:]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="mmga")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps({"seconds": _one_run(args)}))
        return 0

    from keras_mmga.progress import track

    backends = ("tensorflow", "jax")
    times = {b: [] for b in backends}
    argv = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        "--variant",
        args.variant,
        "--batch",
        str(args.batch),
        "--height",
        str(args.height),
        "--width",
        str(args.width),
        "--steps",
        str(args.steps),
    ]
    for _, backend in track([(r, b) for r in range(args.rounds) for b in backends], unit="runs", label="backends"):
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if done.returncode:
            print(done.stderr[-3000:], file=sys.stderr)
            return 1
        times[backend].append(json.loads(done.stdout.strip().splitlines()[-1])["seconds"])
    print(
        f"{args.variant}, batch {args.batch}, {args.height}x{args.width}, "
        f"{args.steps} timed steps x {args.rounds} rounds"
    )
    for backend in backends:
        print(f"  {backend:<10} s/step per round: {', '.join(f'{t:.2f}' for t in times[backend])}")
    ratios = [j / t for j, t in zip(times["jax"], times["tensorflow"])]
    print(f"  JAX / TensorFlow per round: {', '.join(f'{r:.2f}' for r in ratios)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
