"""Deployment with ONNX Runtime: a feature extractor and an on-disk gallery index.

This module runs on ONNX Runtime, OpenCV and NumPy alone (TensorFlow and Keras
are neither needed nor imported): `pip install --no-deps keras-mmga` plus
`requirements-deploy.txt` is a complete deploy install. FAISS (`faiss-cpu`)
is optional, for `GalleryIndex(..., backend="faiss")`.

One step per module: `extractor` (`OnnxFeatureExtractor`; images reach the
graph's input through `keras_mmga.preprocessing`), `gallery` (`GalleryIndex`),
`search_engines` (NumPy / FAISS search), `index_files`; the model card is
read by `keras_mmga.model_card`. The names load on first use (PEP 562).

Example:
```python
from keras_mmga.deploy import GalleryIndex, OnnxFeatureExtractor
extractor = OnnxFeatureExtractor("exported/mmga_market.onnx")
index = GalleryIndex.build(extractor, "Market-1501/bounding_box_test")
index.save("market_gallery")          # market_gallery.index.npz + market_gallery.index.json
index.query("Market-1501/query/0001_c1s1_001051_00.jpg", topk=5, extractor=extractor)[0]["pid"]
```
"""

from keras_mmga.lazy import lazy_exports

# name -> module that defines it
_LAZY = {
    "OnnxFeatureExtractor": "keras_mmga.deploy.extractor",
    "GalleryIndex": "keras_mmga.deploy.gallery",
    "INDEX_FORMAT": "keras_mmga.deploy.index_files",
    "INDEX_SUFFIX": "keras_mmga.deploy.index_files",
    "preprocess": "keras_mmga.preprocessing",
    "IMAGE_SUFFIXES": "keras_mmga.image_io",
    "parse_reid_name": "keras_mmga.image_io",
    "read_image": "keras_mmga.image_io",
    "CARD_FORMAT": "keras_mmga.model_card",
    "read_model_card": "keras_mmga.model_card",
}

__all__ = [
    "CARD_FORMAT",
    "GalleryIndex",
    "IMAGE_SUFFIXES",
    "OnnxFeatureExtractor",
    "parse_reid_name",
    "preprocess",
    "read_image",
    "read_model_card",
]


__getattr__, __dir__ = lazy_exports("keras_mmga.deploy", _LAZY, globals())
