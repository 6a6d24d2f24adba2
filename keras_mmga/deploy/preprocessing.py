"""Deploy's image preprocessing: `keras_mmga.preprocessing` (shared with export, which sits below deploy)."""

from keras_mmga.preprocessing import as_list, preprocess

__all__ = ["as_list", "preprocess"]
