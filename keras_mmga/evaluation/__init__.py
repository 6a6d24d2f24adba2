"""Evaluation: CMC / mAP / mINP (Market-1501 protocol), k-reciprocal re-ranking, flip-averaged features."""

from keras_mmga.evaluation.features import extract_features
from keras_mmga.evaluation.rank import compute_distance_matrix, evaluate, evaluate_rank
from keras_mmga.evaluation.rerank import re_ranking

__all__ = ["compute_distance_matrix", "evaluate", "evaluate_rank", "extract_features", "re_ranking"]
