"""Data: dataset readers, body masks and LIP groups, PK sampling, image files, augmentation, tf.data pipelines.

The names load on first use (PEP 562): the readers (`market`), the PK sampler,
the LIP groups and mask reading (`lip_groups`, `masks`) and the synthetic
writer and its drawing need no TensorFlow, so `keras_mmga.data.market` or
`keras_mmga.data.pk_sampler` can be imported (e.g. by the deploy path or by
`keras-mmga --help`) without loading it; the pipelines, image decoding
(`images`) and augmentation do.
"""

from keras_mmga.lazy import lazy_exports

# name -> module that defines it (a submodule itself when the name is the module's)
_LAZY = {
    "DukeMTMCreID": "keras_mmga.data.market",
    "Market1501": "keras_mmga.data.market",
    "ReIDDataset": "keras_mmga.data.market",
    "load_dataset": "keras_mmga.data.market",
    "TrainData": "keras_mmga.data.pipeline",
    "check_images": "keras_mmga.data.images",
    "make_eval_dataset": "keras_mmga.data.pipeline",
    "make_train_dataset": "keras_mmga.data.pipeline",
    "EPOCH_DEFINITIONS": "keras_mmga.settings",
    "PKSampler": "keras_mmga.data.pk_sampler",
    "augment": "keras_mmga.data.augment",
    "images": "keras_mmga.data.images",
    "lip_groups": "keras_mmga.data.lip_groups",
    "masks": "keras_mmga.data.masks",
    "synthetic": "keras_mmga.data.synthetic",
    "synthetic_people": "keras_mmga.data.synthetic_people",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_exports("keras_mmga.data", _LAZY, globals())
