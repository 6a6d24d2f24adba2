"""Evaluates a saved MMGA model: rank-1/5/10, mAP, mINP (Market-1501 protocol)."""

import argparse

from keras_mmga.engine import evaluate_model, format_results


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("model", help="a .keras file written by scripts/train.py")
    p.add_argument("--data", required=True, help="dataset root (query/, bounding_box_test/)")
    p.add_argument("--dataset", default="market1501", choices=["market1501", "dukemtmcreid"])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--no-flip", action="store_true", help="do not average with the flipped image")
    p.add_argument("--rerank", action="store_true", help="k-reciprocal re-ranking (k1=20, k2=6, lambda=0.3)")
    p.add_argument("--pictures", help="folder for ranking grids and attention overlays")
    p.add_argument("--json", help="write the metrics to this JSON file")
    a = p.parse_args(argv)
    result = evaluate_model(a.model, a.data, a.dataset, a.batch_size, flip=not a.no_flip, rerank=a.rerank,
                            pictures_dir=a.pictures, json_path=a.json)
    print(format_results({a.model: result}))


if __name__ == "__main__":
    main()
