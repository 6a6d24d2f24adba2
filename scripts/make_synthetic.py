"""Writes the embedded synthetic re-ID dataset (Market-1501 layout + LIP parsing masks)."""

import argparse

from keras_mmga.data import synthetic


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("root", help="output folder (images/ and masks/ are created in it)")
    parser.add_argument("--train-ids", type=int, default=100)
    parser.add_argument("--test-ids", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    images, masks = synthetic.write_dataset(args.root, args.train_ids, args.test_ids, seed=args.seed)
    print(f"images: {images}\nmasks:  {masks}")


if __name__ == "__main__":
    main()
