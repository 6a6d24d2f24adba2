"""Evaluation: CMC / mAP / mINP (Market-1501 protocol), k-reciprocal re-ranking, flip-averaged features.

`rank_metrics(distmat, ...)` ranks a distance matrix; `feature_metrics(query_features,
gallery_features, ...)` computes the distances first. (`evaluate_rank` and
`evaluate` are their names before 0.2, kept importable.)
"""

from keras_mmga.evaluation.features import extract_features
from keras_mmga.evaluation.rank import compute_distance_matrix, feature_metrics, rank_metrics
from keras_mmga.evaluation.rerank import re_ranking

# Earlier names.
evaluate_rank = rank_metrics
evaluate = feature_metrics

__all__ = ["compute_distance_matrix", "extract_features", "feature_metrics", "rank_metrics", "re_ranking"]
