"""Evaluates a saved MMGA model: rank-1/5/10, mAP, mINP (Market-1501 protocol).

  python scripts/evaluate.py runs/mmga/best.keras --data Market-1501 --json m.json --pictures pics/
"""

import argparse
import json
import sys

from keras_mmga.engine import evaluate_model, format_results


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="a .keras file written by scripts/train.py")
    p.add_argument("--data", required=True, help="dataset root (query/, bounding_box_test/)")
    p.add_argument("--dataset", default="market1501", choices=["market1501", "dukemtmcreid"])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--no-flip", action="store_true", help="do not average with the flipped image's feature")
    p.add_argument("--rerank", action="store_true", help="k-reciprocal re-ranking (k1=20, k2=6, lambda=0.3)")
    p.add_argument("--pictures", help="folder for ranking grids and attention overlays")
    p.add_argument("--num-pictures", type=int, default=12, help="queries drawn with --pictures")
    p.add_argument("--json", help="also write the metrics to this JSON file")
    p.add_argument("--quiet", action="store_true", help="no summary or progress bars")
    return p


def main(argv=None):
    a = build_parser().parse_args(argv)
    try:
        result = evaluate_model(a.model, a.data, a.dataset, a.batch_size, flip=not a.no_flip, rerank=a.rerank,
                                pictures_dir=a.pictures, json_path=a.json, max_queries_pictures=a.num_pictures,
                                verbose=not a.quiet)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    name = a.model + (" + re-ranking" if a.rerank else "")
    print(format_results({name: result}))
    print(f"{result['num_valid_queries']} queries" + (f"; metrics in {a.json}" if a.json else ""))
    if a.quiet:
        print(json.dumps({k: result[k] for k in ("rank1", "rank5", "rank10", "mAP", "mINP")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
