"""Evaluating a model on a dataset's query / gallery split."""

import json
import os

import keras
import numpy as np

from keras_mmga import visualize
from keras_mmga.data import load_dataset, make_eval_dataset
from keras_mmga.evaluation import compute_distance_matrix, evaluate_rank
from keras_mmga.evaluation.features import extract_features
from keras_mmga.evaluation.rerank import re_ranking


def load_model(model_or_path):
    """An `MMGA` instance, or the one saved at a `.keras` path."""
    if isinstance(model_or_path, (str, os.PathLike)):
        path = os.fspath(model_or_path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"Model file not found: {path!r}.")
        import keras_mmga  # noqa: F401  (registers the custom objects)

        return keras.models.load_model(path)
    return model_or_path


def evaluate_split(model, query, gallery, image_size, batch_size=64, flip=True, rerank=False, max_rank=50,
                   verbose=True):
    """Metrics (and the distance matrix) of `model` on query / gallery sample lists."""
    qf = extract_features(model, make_eval_dataset(query, image_size, batch_size), flip=flip, verbose=verbose)
    gf = extract_features(model, make_eval_dataset(gallery, image_size, batch_size), flip=flip, verbose=verbose)
    distmat = re_ranking(qf, gf) if rerank else compute_distance_matrix(qf, gf)
    result = evaluate_rank(
        distmat,
        np.array([s[1] for s in query]), np.array([s[1] for s in gallery]),
        np.array([s[2] for s in query]), np.array([s[2] for s in gallery]),
        max_rank=max_rank,
    )
    cmc = result["cmc"]
    result.update(rank1=float(cmc[0]), rank5=float(cmc[min(4, len(cmc) - 1)]), rank10=float(cmc[min(9, len(cmc) - 1)]))
    return result, distmat


def format_results(results):
    """Markdown table of rank-1/5/10, mAP and mINP; `results` maps a name to a metrics dict."""
    lines = ["| model | rank-1 | rank-5 | rank-10 | mAP | mINP |", "|---|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['rank1']:.1%} | {r['rank5']:.1%} | {r['rank10']:.1%} | {r['mAP']:.1%} | {r['mINP']:.1%} |"
        )
    return "\n".join(lines)


def evaluate_model(model_or_path, dataset_root, dataset="market1501", batch_size=64, flip=True, rerank=False,
                   pictures_dir=None, json_path=None, max_queries_pictures=12, mask_root=None, verbose=True):
    """Evaluates a saved or in-memory model on a Market / Duke layout dataset.

    Args:
        model_or_path: an `MMGA` or the path of a `.keras` file.
        dataset_root: the dataset folder (query/, bounding_box_test/, ...).
        dataset: `"market1501"` or `"dukemtmcreid"`.
        batch_size: images per inference batch.
        flip: average each image's feature with its flip's (paper protocol).
        rerank: k-reciprocal re-ranking.
        pictures_dir: if set, write ranking grids and attention overlays there.
        json_path: if set, write the metrics as JSON there.

    Returns:
        Dict with `rank1`, `rank5`, `rank10`, `mAP`, `mINP`, `cmc`,
        `num_valid_queries`.
    """
    model = load_model(model_or_path)
    data = load_dataset(dataset_root, dataset, verbose=verbose)
    image_size = model.image_size
    result, distmat = evaluate_split(model, data.query, data.gallery, image_size, batch_size, flip, rerank,
                                     verbose=verbose)
    if pictures_dir:
        write_pictures(model, data, distmat, pictures_dir, max_queries_pictures)
    if json_path:
        os.makedirs(os.path.dirname(os.fspath(json_path)) or ".", exist_ok=True)
        with open(json_path, "w") as f:
            json.dump({k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in result.items()}, f, indent=2)
    return result


def write_pictures(model, data, distmat, out_dir, max_queries=12):
    """Ranking grids for the first queries and attention overlays of the same images."""
    visualize.save_ranking_grids(os.path.join(out_dir, "rankings"), distmat, data.query, data.gallery,
                                 max_queries=max_queries)
    if not getattr(model, "has_attention", False):
        return
    height, width = model.image_size
    for path, _, _ in data.query[:max_queries]:
        bgr = visualize.read_image(path)
        rgb = keras.ops.convert_to_tensor(
            np.asarray(_resize_rgb(bgr, (height, width)), np.float32)[None]
        )
        maps = {k: keras.ops.convert_to_numpy(v)[0] for k, v in model.attention_maps(rgb).items()}
        shown = cv2_resize(bgr, (height, width))
        name = os.path.splitext(os.path.basename(path))[0]
        visualize.save_attention_overlay(os.path.join(out_dir, "attention", f"{name}.png"), shown, maps)


def cv2_resize(bgr, size):
    import cv2

    return cv2.resize(bgr, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


def _resize_rgb(bgr, size):
    return cv2_resize(bgr, size)[..., ::-1]
