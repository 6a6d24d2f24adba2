"""Finds the gallery images closest to a query image with an exported ONNX model.

The gallery's features are computed once and kept in an index (--index PREFIX:
PREFIX.index.npz + PREFIX.index.json); the index is rebuilt when the model or
the gallery folder it was built from differ. Exits with status 2 and a one-line
message for a missing or invalid model, gallery, query image or index.

Example:
    python scripts/search.py Market-1501/query/0001_c1s1_001051_00.jpg \
        --gallery Market-1501/bounding_box_test --model exported/mmga_market.onnx --index runs/market_gallery --topk 10
"""

import argparse
import sys

from keras_mmga.deploy import GalleryIndex, OnnxFeatureExtractor, read_image


def positive_int(text):
    """argparse type: refuses 0 and negatives at parse time, before any model or gallery is loaded."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("query", help="query image")
    p.add_argument("--gallery", required=True, help="folder of gallery images")
    p.add_argument("--model", required=True, help="exported .onnx model")
    p.add_argument("--index", help="index file prefix (built and saved if missing or stale)")
    p.add_argument("--topk", type=positive_int, default=10, help="results to print (default 10)")
    p.add_argument("--batch-size", type=positive_int, default=32, help="images per ONNX Runtime call")
    return p


def main(argv=None):
    a = build_parser().parse_args(argv)
    try:
        read_image(a.query)  # a bad query fails before the gallery is embedded
        extractor = OnnxFeatureExtractor(a.model, batch_size=a.batch_size)
        index = GalleryIndex.load_or_build(
            extractor, a.gallery, a.index,
            on_rebuild=lambda why: print(f"index {a.index!r}: {why}; rebuilding", file=sys.stderr))
        hits = index.query(a.query, topk=a.topk, extractor=extractor)
    except (ValueError, FileNotFoundError) as err:
        # Bad paths or files: the message names them.
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{'rank':>4}  {'distance':>8}  {'pid':>5}  {'cam':>3}  path")
    for rank, hit in enumerate(hits, start=1):
        print(f"{rank:4d}  {hit['distance']:8.4f}  {hit['pid']:5d}  {hit['camid']:3d}  {hit['path']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
