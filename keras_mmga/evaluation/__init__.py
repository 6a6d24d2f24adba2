"""Evaluation: CMC / mAP / mINP, k-reciprocal re-ranking, flip-averaged features."""

from keras_mmga.evaluation.rank import compute_distance_matrix, evaluate, evaluate_rank

__all__ = ["compute_distance_matrix", "evaluate", "evaluate_rank"]
