"""Data: dataset readers, body masks, PK sampling, augmentation, tf.data pipelines."""

from keras_mmga.data import augment, masks, synthetic
from keras_mmga.data.market import DukeMTMCreID, Market1501, ReIDDataset, load_dataset
from keras_mmga.data.pipeline import TrainData, check_images, make_eval_dataset, make_train_dataset
from keras_mmga.data.pk_sampler import PKSampler

__all__ = [
    "DukeMTMCreID",
    "Market1501",
    "PKSampler",
    "ReIDDataset",
    "TrainData",
    "augment",
    "check_images",
    "load_dataset",
    "make_eval_dataset",
    "make_train_dataset",
    "masks",
    "synthetic",
]
