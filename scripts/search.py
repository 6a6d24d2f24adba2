"""Finds the gallery images closest to a query image with an exported ONNX model."""

import argparse
import os

from keras_mmga.deploy import GalleryIndex, OnnxFeatureExtractor


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("query", help="query image")
    p.add_argument("--gallery", required=True, help="folder of gallery images")
    p.add_argument("--model", required=True, help="exported .onnx model")
    p.add_argument("--index", help="index file prefix (built and saved if missing)")
    p.add_argument("--topk", type=int, default=10)
    a = p.parse_args(argv)
    extractor = OnnxFeatureExtractor(a.model)
    if a.index and os.path.exists(a.index + ".npz"):
        index = GalleryIndex.load(a.index)
    else:
        index = GalleryIndex.build(extractor, a.gallery)
        if a.index:
            index.save(a.index)
    for rank, hit in enumerate(index.query(extractor(a.query)[0], a.topk), start=1):
        print(f"{rank:3d}  {hit['distance']:.4f}  pid={hit['pid']:5d}  cam={hit['camid']:2d}  {hit['path']}")


if __name__ == "__main__":
    main()
