"""Body-part masks from images: the first stage of the pipeline.

MMGA trains on body-part masks. This package makes them offline from the
images alone: a pose model (BlazePose GHUM "full", taken from the mediapipe
0.10.21 wheel into a local cache, `pose_model`) gives a person segmentation
and 33 landmarks; `parser` turns them into a LIP label map (head, torso,
arms, thighs, shins, feet); `writer` runs a whole image folder into the
mirrored mask folder that `keras_mmga.data.masks` reads (`mask_format="lip"`).

Importing this package loads nothing heavy; the interpreter is imported when
a model is opened.

Example:
```python
from keras_mmga.masks import write_masks
summary = write_masks("Market-1501", "Market-1501-masks")  # doctest: +SKIP
```
"""

from keras_mmga.lazy import lazy_exports

_LAZY = {
    "PoseModel": "keras_mmga.masks.pose_model",
    "PoseModelError": "keras_mmga.masks.pose_model",
    "resolve_pose_model": "keras_mmga.masks.pose_model",
    "BodyPartParser": "keras_mmga.masks.parser",
    "write_masks": "keras_mmga.masks.writer",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_exports("keras_mmga.masks", _LAZY, globals())
