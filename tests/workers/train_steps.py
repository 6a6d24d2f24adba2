"""Trains a small float64 MMGA for a few steps and saves its weights.

Used by the distribution tests, each run in a fresh process (TensorFlow fixes
its devices at start-up, and strategies of different sizes in one process
collide on collective-op keys).

    train_steps.py OUT.npz [--replicas N] [--tf-config JSON] [--steps S] [--evaluate-mining]

Writes OUT.npz (the model's weights in order) and OUT.json (fit history).
--evaluate-mining also evaluates, after training, a global batch of two
identities × 4 images (one identity per replica with 2 replicas) with global
and with per-replica triplet mining (OUT.json's "mining").
float64: a random-init ResNet50 is so ill-conditioned that re-ordering a
float32 batch on one device changes early-layer gradients by ~10 %; in float64
that noise is ~1e-7, so comparing weights to 1e-5 is a real identity check.
"""

import argparse
import json
import os
import sys

parser = argparse.ArgumentParser()
parser.add_argument("out")
parser.add_argument("--replicas", type=int, default=1)
parser.add_argument("--tf-config")
parser.add_argument("--steps", type=int, default=1)
parser.add_argument("--evaluate-mining", action="store_true")
parser.add_argument("--seeded-init", action="store_true", help="start from seeded.py's NumPy weights (TF vs JAX)")
args = parser.parse_args()

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if args.tf_config:
    os.environ["TF_CONFIG"] = args.tf_config

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.dirname(__file__))
import seeded  # noqa: E402

from keras_mmga import MMGA
from keras_mmga.backends import distribute  # noqa: E402

SHAPE = seeded.SHAPE
GLOBAL_BATCH = seeded.GLOBAL_BATCH

if args.replicas > 1:
    tf.config.set_logical_device_configuration(
        tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * args.replicas
    )


def global_batches(steps, identities=4):
    images, targets = seeded.identity_batches(steps, identities)
    options = tf.data.Options()
    # Each worker keeps its contiguous part of every global batch.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return tf.data.Dataset.from_tensor_slices((images, targets)).batch(GLOBAL_BATCH).with_options(options)


def main():
    if args.tf_config:
        strategy = distribute.make_strategy("multiworker")
    elif args.replicas > 1:
        strategy = distribute.make_strategy("mirrored", [f"/cpu:{i}" for i in range(args.replicas)])
    else:
        strategy = distribute.make_strategy("one")
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = MMGA(4, variant="mmga", input_shape=SHAPE, backbone_weights=None, sync_batchnorm=True, dtype="float64")
        if args.seeded_init:
            seeded.assign_seeded_weights(model)
        model.compile(steps_per_epoch=args.steps, learning_rate=0.01)
    initial = [keras.ops.convert_to_numpy(v) for v in model.weights]
    history = model.fit(global_batches(args.steps), epochs=1, verbose=0).history
    final = [keras.ops.convert_to_numpy(v) for v in model.weights]
    np.savez(args.out, *final)
    moved = max(float(np.max(np.abs(a - b))) for a, b in zip(initial, final))
    info = {"history": {k: [float(x) for x in v] for k, v in history.items()}, "moved": moved}
    if args.evaluate_mining:
        # Same weights, same batch: only where the hardest triplets are mined differs.
        info["mining"] = {}
        for name, cross_replica in (("global", True), ("per_replica", False)):
            with strategy.scope():
                model.compile(steps_per_epoch=1, cross_replica_triplet=cross_replica)
            logs = model.evaluate(global_batches(1, identities=2), verbose=0, return_dict=True)
            info["mining"][name] = {k: float(v) for k, v in logs.items()}
    with open(args.out + ".json", "w") as f:
        json.dump(info, f)


if __name__ == "__main__":
    main()
