"""A model's metrics on a dataset's query / gallery split (Market-1501 protocol).

`split_metrics` takes sample lists, `dataset_metrics` a model file and a
dataset folder (`keras-mmga evaluate`); both rank with `rank_metrics`.
"""

import json
import os

import numpy as np

from keras_mmga.data import load_dataset, make_eval_dataset
from keras_mmga.evaluation.features import extract_features
from keras_mmga.evaluation.rank import compute_distance_matrix, rank_metrics
from keras_mmga.evaluation.rerank import re_ranking
from keras_mmga.models.loading import load_model
from keras_mmga.visualize import write_pictures

METRICS = ("rank1", "rank5", "rank10", "mAP", "mINP")


def split_metrics(model, query, gallery, image_size, batch_size=64, flip=True, rerank=False, max_rank=50, verbose=True):
    """Metrics and the distance matrix of `model` on query / gallery sample lists.

    Args:
        model: callable `images -> (N, D)` features.
        query, gallery: lists of `(path, pid, camid)` (a dataset's splits).
        image_size: `(H, W)` the images are resized to.
        batch_size: images per inference batch.
        flip: average each image's feature with its flip's (paper protocol).
        rerank: k-reciprocal re-ranking (k1=20, k2=6, λ=0.3).
        max_rank: length of the CMC curve.
        verbose: progress bars.

    Returns:
        `(metrics, distmat)`: metrics holds `rank1`, `rank5`, `rank10`, `mAP`,
        `mINP` (fractions), `cmc` and `num_valid_queries`.

    Example:
    ```python
    market = Market1501("data/market1501")
    metrics, distmat = split_metrics(model, market.query, market.gallery, (384, 128))
    ```
    """
    qf = extract_features(
        model,
        make_eval_dataset(query, image_size, batch_size),
        flip=flip,
        verbose=verbose,
        label="query features",
        num_images=len(query),
    )
    gf = extract_features(
        model,
        make_eval_dataset(gallery, image_size, batch_size),
        flip=flip,
        verbose=verbose,
        label="gallery features",
        num_images=len(gallery),
    )
    distmat = re_ranking(qf, gf) if rerank else compute_distance_matrix(qf, gf)
    result = rank_metrics(
        distmat,
        np.array([s[1] for s in query]),
        np.array([s[1] for s in gallery]),
        np.array([s[2] for s in query]),
        np.array([s[2] for s in gallery]),
        max_rank=max_rank,
    )
    cmc = result["cmc"]
    result.update(rank1=float(cmc[0]), rank5=float(cmc[min(4, len(cmc) - 1)]), rank10=float(cmc[min(9, len(cmc) - 1)]))
    result["mAP"], result["mINP"] = float(result["mAP"]), float(result["mINP"])
    return result, distmat


def format_results(results):
    """Markdown table of rank-1/5/10, mAP and mINP, in percent.

    Args:
        results: dict name → metrics dict (as `dataset_metrics` returns).

    Example:
    ```python
    print(format_results({"mmga": dataset_metrics("best.keras", "data/market1501")}))
    ```
    """
    lines = ["| model | rank-1 | rank-5 | rank-10 | mAP | mINP |", "|---|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append("| " + " | ".join([str(name)] + [f"{100 * r[m]:.1f}%" for m in METRICS]) + " |")
    return "\n".join(lines)


def dataset_metrics(
    model_or_path,
    dataset_root,
    dataset="market1501",
    batch_size=64,
    flip=True,
    rerank=False,
    pictures_dir=None,
    json_path=None,
    max_queries_pictures=12,
    verbose=True,
):
    """Evaluates a saved or in-memory model on a Market / Duke layout dataset.

    Single query; gallery images of the query's identity seen by the query's
    camera are ignored; distractors (pid 0) stay, junk (pid -1) is dropped.

    Args:
        model_or_path: an `MMGA`, or the path of a `.keras` file.
        dataset_root: the dataset folder (`query/`, `bounding_box_test/`, ...).
        dataset: `"market1501"` or `"dukemtmcreid"`.
        batch_size: images per inference batch.
        flip: average each image's feature with its flip's (paper protocol).
        rerank: k-reciprocal re-ranking.
        pictures_dir: if set, write ranking grids (`rankings/`) and attention
            overlays (`attention/`) of the first queries there.
        json_path: if set, write the metrics (and the CMC curve) as JSON there.
        max_queries_pictures: how many queries get pictures.
        verbose: dataset summary and progress bars.

    Returns:
        Dict with `rank1`, `rank5`, `rank10`, `mAP`, `mINP` (fractions), `cmc`
        and `num_valid_queries`.

    Example:
    ```python
    metrics = dataset_metrics("runs/market_mmga/best.keras", "data/market1501", pictures_dir="pics")
    metrics["rank1"], metrics["mAP"]
    ```
    """
    model = load_model(model_or_path)
    data = load_dataset(dataset_root, dataset, verbose=verbose)
    image_size = tuple(model.input_shape[1:3])  # an MMGA or any Keras model: (None, H, W, C)
    result, distmat = split_metrics(
        model, data.query, data.gallery, image_size, batch_size, flip, rerank, verbose=verbose
    )
    if pictures_dir:
        write_pictures(model, data, distmat, pictures_dir, max_queries_pictures)
    if json_path:
        os.makedirs(os.path.dirname(os.fspath(json_path)) or ".", exist_ok=True)
        with open(json_path, "w") as f:
            json.dump(
                {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in result.items()}
                | {"rerank": bool(rerank), "flip": bool(flip)},
                f,
                indent=2,
            )
    return result
