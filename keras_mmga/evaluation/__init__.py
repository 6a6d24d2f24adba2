"""Evaluation: CMC / mAP / mINP (Market-1501 protocol), k-reciprocal re-ranking, flip-averaged features.

Each `*_metrics` function starts one step earlier: `rank_metrics(distmat, ...)`
ranks a distance matrix; `feature_metrics(query_features, gallery_features,
...)` computes the distances first; `split_metrics(model, query, gallery,
...)` extracts the features first; `dataset_metrics(model_or_path,
dataset_root)` loads the model and the dataset first.
"""

from keras_mmga.evaluation.features import extract_features
from keras_mmga.evaluation.model_metrics import (
    METRICS,
    dataset_metrics,
    format_results,
    split_metrics,
)
from keras_mmga.evaluation.rank import compute_distance_matrix, feature_metrics, rank_metrics
from keras_mmga.evaluation.rerank import re_ranking

__all__ = [
    "METRICS",
    "compute_distance_matrix",
    "dataset_metrics",
    "extract_features",
    "feature_metrics",
    "format_results",
    "rank_metrics",
    "re_ranking",
    "split_metrics",
]
