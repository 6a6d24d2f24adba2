"""Finds the gallery images closest to a query image with an exported ONNX model.

The gallery's features are computed once and kept in an index (--index PREFIX:
PREFIX.npz + PREFIX.json); the index is rebuilt when the model or the gallery
folder it was built from differ.

Example:
    python scripts/search.py Market-1501/query/0001_c1s1_001051_00.jpg \
        --gallery Market-1501/bounding_box_test --model exported/mmga_market.onnx --index runs/market_gallery --topk 10
"""

import argparse
import os
import sys

from keras_mmga.deploy import GalleryIndex, OnnxFeatureExtractor


def load_or_build(extractor, gallery, prefix=None):
    """The index at `prefix` if it was built from this model and gallery, else a new one (saved to `prefix`)."""
    if prefix and os.path.isfile(prefix + ".npz") and os.path.isfile(prefix + ".json"):
        index = GalleryIndex.load(prefix)
        stale = index.stale_reason(extractor, gallery)
        if stale is None:
            index.extractor = extractor
            return index
        print(f"index {prefix!r}: {stale}; rebuilding", file=sys.stderr)
    index = GalleryIndex.build(extractor, gallery)
    if prefix:
        index.save(prefix)
    return index


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("query", help="query image")
    p.add_argument("--gallery", required=True, help="folder of gallery images")
    p.add_argument("--model", required=True, help="exported .onnx model")
    p.add_argument("--index", help="index file prefix (built and saved if missing or stale)")
    p.add_argument("--topk", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=32)
    a = p.parse_args(argv)
    extractor = OnnxFeatureExtractor(a.model, batch_size=a.batch_size)
    index = load_or_build(extractor, a.gallery, a.index)
    hits = index.query(a.query, topk=a.topk, extractor=extractor)
    print(f"{'rank':>4}  {'distance':>8}  {'pid':>5}  {'cam':>3}  path")
    for rank, hit in enumerate(hits, start=1):
        print(f"{rank:4d}  {hit['distance']:8.4f}  {hit['pid']:5d}  {hit['camid']:3d}  {hit['path']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
