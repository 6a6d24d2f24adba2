"""The paper's Table 1: every variant trained with one budget and seed, then evaluated."""

import dataclasses
import os

from keras_mmga.data import load_dataset
from keras_mmga.engine.evaluator import evaluate_split
from keras_mmga.engine.trainer import TrainConfig, train
from keras_mmga.models import VARIANTS

ROW_NAMES = {"baseline": "Baseline", "baseline_att": "Baseline+Att", "wmga": "WMGA", "dmga": "DMGA", "mmga": "MMGA"}


def run_ablation(base_config, variants=tuple(VARIANTS), dataset_label="dataset"):
    """Trains each variant with `base_config` (its variant and output_dir replaced).

    Returns `(markdown_table, {variant: metrics})`.
    """
    data = load_dataset(base_config.dataset_root, base_config.dataset, verbose=False)
    results = {}
    for variant in variants:
        config = dataclasses.replace(base_config, variant=variant,
                                     output_dir=os.path.join(base_config.output_dir, variant))
        model, _ = train(config)
        results[variant], _ = evaluate_split(model, data.query, data.gallery, config.image_size, verbose=False)
    lines = [f"| Method | {dataset_label} rank-1 | {dataset_label} mAP |", "|---|---|---|"]
    for variant in variants:
        r = results[variant]
        lines.append(f"| {ROW_NAMES[variant]}(%) | {100 * r['rank1']:.1f} | {100 * r['mAP']:.1f} |")
    return "\n".join(lines), results


__all__ = ["TrainConfig", "run_ablation"]
