"""Parameter counts of every variant and training-step time of mmga vs baseline.

Usage:
    python benchmarks/bench_model.py [--batch 32] [--height 128] [--width 64] [--steps 5]

Parameter counts are at the paper's 384x128 input with 751 identities (Market-1501's
training identities); the step time is the median over `--steps` steps on random data, after two warm-up
steps that trace and compile the train function.
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from step_timer import StepTimer  # noqa: E402

from keras_mmga import MMGA, VARIANTS  # noqa: E402


def parameter_counts(num_classes=751):
    counts = {}
    for variant in VARIANTS:
        model = MMGA(num_classes, variant=variant, input_shape=(384, 128, 3), backbone_weights=None)
        counts[variant] = (model.count_params(), sum(int(np.prod(v.shape)) for v in model.backbone_variables()))
        del model
        keras.backend.clear_session()
    return counts


def step_time(variant, batch, height, width, steps, strategy=None, dtype=None, cross_replica_triplet=True):
    """Median seconds per training step on random data (batch // 4 identities × 4), after 2 warm-up steps.

    `strategy` (default: the current one) replicates the model, with
    synchronised BatchNorm when it has several replicas; `dtype` is a Keras
    dtype policy such as `"mixed_bfloat16"`.
    """
    strategy = strategy or tf.distribute.get_strategy()
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = MMGA(
            batch // 4,
            variant=variant,
            input_shape=(height, width, 3),
            backbone_weights=None,
            sync_batchnorm=strategy.num_replicas_in_sync > 1,
            dtype=dtype,
        )
        model.compile(steps_per_epoch=steps, cross_replica_triplet=cross_replica_triplet)
    rng = np.random.RandomState(0)
    x = rng.uniform(0, 255, (batch, height, width, 3)).astype("float32")
    y = {
        "labels": np.repeat(np.arange(batch // 4), 4).astype("int32"),
        "masks": rng.rand(batch, height // 16, width // 16, 3).astype("float32"),
    }
    ds = tf.data.Dataset.from_tensors((x, y)).repeat()
    timer = StepTimer()
    # One fit call: the first steps trace and compile, later ones are timed each on its own
    # (a second fit call can retrace and would charge that to the timed steps).
    model.fit(ds, epochs=1, steps_per_epoch=steps + _WARMUP_STEPS, verbose=0, callbacks=[timer])
    return float(np.median(timer.seconds[_WARMUP_STEPS:]))


_WARMUP_STEPS = 2


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()

    print("| variant | parameters (384x128, 751 ids) | of which backbone |")
    print("|---|---|---|")
    for variant, (total, backbone) in parameter_counts().items():
        print(f"| {variant} | {total:,} | {backbone:,} |")
    print()
    print(f"| variant | s / training step (batch {args.batch}, {args.height}x{args.width}) |")
    print("|---|---|")
    for variant in ("baseline", "mmga"):
        print(f"| {variant} | {step_time(variant, args.batch, args.height, args.width, args.steps):.2f} |")


if __name__ == "__main__":
    main()
