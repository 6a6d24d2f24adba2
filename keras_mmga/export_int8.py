"""int8 ONNX export: moved to `keras_mmga.export.int8`; this module keeps the old import path working.

Example:
```python
from keras_mmga.export_int8 import export_int8   # same as keras_mmga.export.int8.export_int8
```
"""

from keras_mmga.export.int8 import (  # noqa: F401  (re-exported)
    CALIBRATION_BATCH,
    DEFAULT_CALIBRATION_COUNT,
    DEFAULT_MIN_COSINE,
    AccuracyError,
    calibration_paths,
    compare,
    cosine_similarity,
    export_int8,
    load_images,
    quantize,
    rank_accuracy,
)

__all__ = ["AccuracyError", "CALIBRATION_BATCH", "DEFAULT_CALIBRATION_COUNT", "DEFAULT_MIN_COSINE",
           "calibration_paths", "compare", "cosine_similarity", "export_int8", "load_images", "quantize",
           "rank_accuracy"]
