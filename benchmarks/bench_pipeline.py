"""Images/s of the training pipeline (decode, resize, flip, erasing, masks, PK batching).

Usage:
    python benchmarks/bench_pipeline.py [--root /tmp/mmga_synthetic] [--height 384 --width 128] [--batches 30]

Writes the synthetic dataset (100 + 100 identities) if ROOT has none, then times
`make_train_dataset(...)` batches of 96 after two warm-up batches.
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_mmga.data import Market1501, make_train_dataset, synthetic  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="/tmp/mmga_synthetic")
    parser.add_argument("--height", type=int, default=384)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--batches", type=int, default=30)
    args = parser.parse_args()
    images, masks = os.path.join(args.root, "images"), os.path.join(args.root, "masks")
    if not os.path.isdir(images):
        synthetic.write_dataset(args.root)
    market = Market1501(images, verbose=False)
    start = time.perf_counter()
    data = make_train_dataset(market.train, (args.height, args.width), mask_root=masks, image_root=images)
    setup = time.perf_counter() - start
    stream = iter(data.dataset)
    for _ in range(2):
        next(stream)
    start = time.perf_counter()
    for _ in range(args.batches):
        next(stream)
    elapsed = time.perf_counter() - start
    print(f"setup (file check + mask targets for {len(market.train)} images): {setup:.2f} s")
    print(f"{args.batches * data.batch_size / elapsed:.0f} images/s at {args.height}x{args.width}, batch {data.batch_size}")


if __name__ == "__main__":
    main()
