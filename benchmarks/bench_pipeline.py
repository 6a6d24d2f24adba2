"""Images/s of the training pipeline (decode, resize, flip, random erasing, mask targets, PK batching).

Usage:
    python benchmarks/bench_pipeline.py [--root /tmp/mmga_synthetic] [--height 384 --width 128]
                                        [--batches 30] [--cache] [--no-masks]

Writes the synthetic dataset (100 + 100 identities) if ROOT has none, builds
`make_train_dataset(...)` (P=24 x K=4 = 96, LIP masks, "parts" mode, default
augmentation), takes two warm-up batches, then times `--batches` batches
pulled as fast as possible. Prints the 1-minute load average too: the figure
is only meaningful on an otherwise idle machine.
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
    parser.add_argument("--cache", action="store_true", help="cache_images=True (decoded images in memory)")
    parser.add_argument("--no-masks", action="store_true", help="no masks: batches carry labels only")
    args = parser.parse_args()
    images, masks = os.path.join(args.root, "images"), os.path.join(args.root, "masks")
    if not os.path.isdir(images):
        synthetic.write_dataset(args.root)
    market = Market1501(images, verbose=False)
    start = time.perf_counter()
    data = make_train_dataset(
        market.train,
        (args.height, args.width),
        mask_root=None if args.no_masks else masks,
        mask_mode=None if args.no_masks else "parts",
        image_root=images,
        cache_images=args.cache,
    )
    setup = time.perf_counter() - start
    stream = iter(data.dataset)
    for _ in range(2):
        next(stream)
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    for _ in range(args.batches):
        next(stream)
    elapsed = time.perf_counter() - start
    print(f"cpus: {os.cpu_count()}, load average before timing: {load_before:.2f}")
    print(
        f"setup (file check, mask targets{', image cache' if args.cache else ''} for {len(market.train)} images): "
        f"{setup:.2f} s"
    )
    print(
        f"{args.batches * data.batch_size / elapsed:.0f} images/s at {args.height}x{args.width}, "
        f"batch {data.batch_size}, masks {'off' if args.no_masks else 'on'}, cache {'on' if args.cache else 'off'}"
    )


if __name__ == "__main__":
    main()
