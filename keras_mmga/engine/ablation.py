"""The ablation study of the paper's Table 1: five variants, same budget and seed."""

import dataclasses
import json
import os
import time

import keras

from keras_mmga.engine.evaluator import METRICS, evaluate_model
from keras_mmga.engine.trainer import TrainConfig, train

# Paper order and row names (Table 1).
VARIANT_ORDER = ("baseline", "baseline_att", "wmga", "dmga", "mmga")
ROW_NAMES = {
    "baseline": "Baseline",
    "baseline_att": "Baseline+Att",
    "wmga": "WMGA",
    "dmga": "DMGA",
    "mmga": "MMGA",
}


@dataclasses.dataclass
class AblationDataset:
    """One column group of the table: a dataset and its masks.

    Args:
        name: str, the column header (e.g. `"Market-1501"`).
        root: str, the dataset folder (Market / Duke layout).
        mask_root: str, its mirrored mask folder.
        layout: `"market1501"` or `"dukemtmcreid"` (file-name pattern).
    """

    name: str
    root: str
    mask_root: str
    layout: str = "market1501"


def run_ablation(datasets, output_dir, variants=VARIANT_ORDER, verbose=1, **train_kwargs):
    """Trains and evaluates every variant on every dataset with one shared recipe.

    Each run lives in `output_dir/<dataset>/<variant>/` (a normal training
    run folder, so an interrupted ablation resumes where it stopped) and its
    final metrics in `metrics.json` there; runs that already have metrics are
    not repeated. The table is written to `output_dir/ablation.md`.

    Args:
        datasets: list of `AblationDataset`.
        output_dir: str, the ablation folder.
        variants: variants to run, in table order.
        verbose: Keras progress verbosity of the runs.
        **train_kwargs: `TrainConfig` fields shared by every run (epochs,
            image_size, learning_rate, seed, ...). `eval_every` defaults to 0:
            each run is evaluated once, at its end.

    Returns:
        `(results, table)`: results maps dataset name → variant → metrics.

    Example:
    >>> market = AblationDataset("Market-1501", "data/market1501", "data/market1501_masks")
    >>> results, table = run_ablation([market], "runs/ablation", epochs=120)
    >>> print(table)
    """
    unknown = set(variants) - set(VARIANT_ORDER)
    if unknown:
        raise ValueError(f"Unknown variants {sorted(unknown)}; expected some of {VARIANT_ORDER}.")
    for key in ("dataset_root", "output_dir", "mask_root", "variant", "dataset"):
        if key in train_kwargs:
            raise ValueError(f"{key} is set per run by run_ablation; do not pass it.")
    train_kwargs.setdefault("eval_every", 0)
    os.makedirs(output_dir, exist_ok=True)
    results = {}
    for ds in datasets:
        results[ds.name] = {}
        for variant in variants:
            run_dir = os.path.join(output_dir, _slug(ds.name), variant)
            metrics_path = os.path.join(run_dir, "metrics.json")
            if os.path.isfile(metrics_path):
                with open(metrics_path) as f:
                    results[ds.name][variant] = json.load(f)
                continue
            print(f"== {ds.name}: {ROW_NAMES[variant]} ==")
            start = time.perf_counter()
            config = TrainConfig(dataset_root=ds.root, output_dir=run_dir, mask_root=ds.mask_root, dataset=ds.layout,
                                 variant=variant, verbose=verbose, **train_kwargs)
            model, _ = train(config)
            metrics = evaluate_model(model, ds.root, ds.layout, verbose=False)
            summary = {m: float(metrics[m]) for m in METRICS} | {"train_time_s": time.perf_counter() - start}
            with open(metrics_path, "w") as f:
                json.dump(summary, f, indent=2)
            results[ds.name][variant] = summary
            print(f"   rank-1 {summary['rank1']:.1%}  mAP {summary['mAP']:.1%}")
            # Five ResNet50s in one process: free each before the next.
            del model
            keras.backend.clear_session()
    table = format_ablation_table(results, variants)
    with open(os.path.join(output_dir, "ablation.md"), "w") as f:
        f.write(table + "\n")
    return results, table


def format_ablation_table(results, variants=VARIANT_ORDER):
    """Markdown table in the layout of the paper's Table 1 (rank-1 and mAP per dataset, %).

    Args:
        results: dataset name → variant → metrics (`rank1`, `mAP` as fractions).
        variants: rows, in order.

    Example:
    >>> print(format_ablation_table({"Market-1501": {"mmga": {"rank1": 0.95, "mAP": 0.872}}}, ["mmga"]))
    | Model | Market-1501 Rank-1 | Market-1501 mAP |
    |---|---|---|
    | MMGA | 95.0 | 87.2 |
    """
    names = list(results)
    header = "| Model | " + " | ".join(f"{n} Rank-1 | {n} mAP" for n in names) + " |"
    lines = [header, "|---" * (1 + 2 * len(names)) + "|"]
    for variant in variants:
        cells = []
        for n in names:
            r = results[n].get(variant)
            cells += [f"{100 * r['rank1']:.1f}", f"{100 * r['mAP']:.1f}"] if r else ["–", "–"]
        lines.append(f"| {ROW_NAMES[variant]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _slug(name):
    return "".join(c if c.isalnum() else "_" for c in name).strip("_").lower() or "dataset"
