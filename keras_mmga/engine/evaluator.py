"""Evaluating a model on a dataset's query / gallery split (Market-1501 protocol)."""

import json
import os

import cv2
import keras
import numpy as np

from keras_mmga import visualize
from keras_mmga.data import load_dataset, make_eval_dataset
from keras_mmga.evaluation import compute_distance_matrix, rank_metrics, extract_features, re_ranking
from keras_mmga.models.loading import check_keras_archive, load_model  # noqa: F401  (users import them here)

METRICS = ("rank1", "rank5", "rank10", "mAP", "mINP")


def split_metrics(model, query, gallery, image_size, batch_size=64, flip=True, rerank=False, max_rank=50,
                   verbose=True):
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
    qf = extract_features(model, make_eval_dataset(query, image_size, batch_size), flip=flip, verbose=verbose,
                          label="query features", num_images=len(query))
    gf = extract_features(model, make_eval_dataset(gallery, image_size, batch_size), flip=flip, verbose=verbose,
                          label="gallery features", num_images=len(gallery))
    distmat = re_ranking(qf, gf) if rerank else compute_distance_matrix(qf, gf)
    result = rank_metrics(
        distmat,
        np.array([s[1] for s in query]), np.array([s[1] for s in gallery]),
        np.array([s[2] for s in query]), np.array([s[2] for s in gallery]),
        max_rank=max_rank,
    )
    cmc = result["cmc"]
    result.update(rank1=float(cmc[0]), rank5=float(cmc[min(4, len(cmc) - 1)]), rank10=float(cmc[min(9, len(cmc) - 1)]))
    result["mAP"], result["mINP"] = float(result["mAP"]), float(result["mINP"])
    return result, distmat


def format_results(results):
    """Markdown table of rank-1/5/10, mAP and mINP, in percent.

    Args:
        results: dict name → metrics dict (as `evaluate_model` returns).

    Example:
    ```python
    print(format_results({"mmga": evaluate_model("best.keras", "data/market1501")}))
    
    ```
    """
    lines = ["| model | rank-1 | rank-5 | rank-10 | mAP | mINP |", "|---|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append("| " + " | ".join([str(name)] + [f"{100 * r[m]:.1f}%" for m in METRICS]) + " |")
    return "\n".join(lines)


def evaluate_model(model_or_path, dataset_root, dataset="market1501", batch_size=64, flip=True, rerank=False,
                   pictures_dir=None, json_path=None, max_queries_pictures=12, verbose=True):
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
    metrics = evaluate_model("runs/market_mmga/best.keras", "data/market1501", pictures_dir="pics")
    metrics["rank1"], metrics["mAP"]
    ```
    """
    model = load_model(model_or_path)
    data = load_dataset(dataset_root, dataset, verbose=verbose)
    image_size = getattr(model, "image_size", None) or tuple(model.input_shape[1:3])
    result, distmat = split_metrics(model, data.query, data.gallery, image_size, batch_size, flip, rerank,
                                     verbose=verbose)
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


def write_pictures(model, data, distmat, out_dir, max_queries=12):
    """Ranking grids and attention overlays (paper Figures 1 and 5) of the first queries.

    Args:
        model: the evaluated model (overlays need `attention_maps`).
        data: the `ReIDDataset` evaluated.
        distmat: its (Q, G) distance matrix.
        out_dir: folder; `rankings/` and `attention/` are written in it.
        max_queries: how many queries.

    Returns:
        The written paths.
    """
    out_dir = os.fspath(out_dir)
    written = visualize.save_ranking_grids(os.path.join(out_dir, "rankings"), distmat, data.query, data.gallery,
                                           max_queries=max_queries)
    # Baseline variants have no attention module: nothing to overlay.
    if not getattr(model, "has_attention", False):
        return written
    height, width = model.image_size
    for path, _, _ in data.query[:max_queries]:
        shown = cv2.resize(visualize.read_image(path, channel_order="rgb"), (width, height),
                           interpolation=cv2.INTER_LINEAR)
        maps = {k: keras.ops.convert_to_numpy(v)[0]
                for k, v in model.attention_maps(shown.astype(np.float32)[None]).items()}
        target = os.path.join(out_dir, "attention", os.path.splitext(os.path.basename(path))[0] + ".png")
        visualize.save_attention_overlay(target, shown, maps, channel_order="rgb")
        written.append(target)
    return written


# Its name before 0.2, kept importable.
evaluate_split = split_metrics
