"""Writes the embedded synthetic re-ID dataset (Market-1501 layout + LIP parsing masks).

Usage:
    python scripts/make_synthetic.py ROOT [--train-ids 100] [--test-ids 100] [--seed 0]

Creates ROOT/images (bounding_box_train/, bounding_box_test/, query/) and
ROOT/masks (the same tree of LIP-label PNGs).
"""

import argparse

from keras_mmga.data import synthetic


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="output folder (images/ and masks/ are created in it)")
    parser.add_argument("--train-ids", type=int, default=100, help="training identities")
    parser.add_argument("--test-ids", type=int, default=100, help="test (query/gallery) identities")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--distractors", type=int, default=20, help="gallery images of pid 0")
    parser.add_argument("--junk", type=int, default=10, help="gallery images of pid -1")
    args = parser.parse_args()
    images, masks = synthetic.write_dataset(args.root, args.train_ids, args.test_ids, seed=args.seed,
                                            num_distractors=args.distractors, num_junk=args.junk)
    print(f"images: {images}\nmasks:  {masks}")


if __name__ == "__main__":
    main()
