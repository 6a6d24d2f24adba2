"""The ablation study of the paper's Table 1: five variants, same budget and seed."""

import dataclasses
import json
import os
import time

import keras

from keras_mmga.engine.callbacks import ResumableBackup
from keras_mmga.engine.config import TrainConfig
from keras_mmga.engine.trainer import train
from keras_mmga.evaluation.model_metrics import METRICS, dataset_metrics
from keras_mmga.models import VARIANTS
from keras_mmga.settings import VARIANT_NAMES

# Paper order and row names (Table 1).
VARIANT_ORDER = VARIANT_NAMES
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
        provenance: optional JSON-able dict saying how the data were made
            (e.g. the synthetic generator's settings). It is stored with each
            run's metrics and compared like the training settings, since the
            folders' paths alone do not show that their contents changed.
    """

    name: str
    root: str
    mask_root: str
    layout: str = "market1501"
    provenance: dict = None


# TrainConfig fields that cannot change a run's result, so they may differ
# between the run that wrote metrics.json and a later call: the run folders
# (the dataset is identified by its column name, layout and provenance, so a
# moved dataset keeps its results), verbosity, evaluation during training
# (the table uses the final model), the device list and image caching.
_UNCOMPARED = (
    "dataset_root",
    "output_dir",
    "mask_root",
    "verbose",
    "eval_every",
    "eval_batch_size",
    "devices",
    "cache_images",
    "save_optimizer",
)


def run_ablation(datasets, output_dir, variants=VARIANT_ORDER, verbose=1, parts=None, **train_kwargs):
    """Trains and evaluates every variant on every dataset with one shared recipe.

    Each run lives in `output_dir/<dataset>/<variant>/` (a normal training
    run folder, so an interrupted ablation resumes where it stopped) and its
    final metrics in `metrics.json` there, with the settings that produced
    them; runs that already have metrics with the same settings are not
    repeated. Metrics of other settings (another budget, learning rate, input
    size, dataset provenance, ...) are a `ValueError` raised before anything
    is trained: one ablation folder holds one recipe, so that the table never
    mixes budgets, and retraining over the old run is not done silently (its
    folder holds days of training, and its resume state would be continued
    rather than restarted). The table is written to `output_dir/ablation.md`.

    Args:
        datasets: list of `AblationDataset`.
        output_dir: str, the ablation folder.
        variants: variants to run, in table order.
        verbose: Keras progress verbosity of the runs.
        parts: part groups of the `mmga` row (`TrainConfig.parts`; None:
            its default upper / bottom). The other rows have no parts to set.
        **train_kwargs: `TrainConfig` fields shared by every run (epochs,
            image_size, learning_rate, seed, ...). `eval_every` defaults to 0:
            each run is evaluated once, at its end.

    Returns:
        `(results, table)`: results maps dataset name → variant → metrics.

    Example:
    ```python
    market = AblationDataset("Market-1501", "data/market1501", "data/market1501_masks")
    results, table = run_ablation([market], "runs/ablation", epochs=120)
    print(table)
    ```
    """
    unknown = set(variants) - set(VARIANT_ORDER)
    if unknown:
        raise ValueError(f"Unknown variants {sorted(unknown)}; expected some of {VARIANT_ORDER}.")
    for key in ("dataset_root", "output_dir", "mask_root", "variant", "dataset"):
        if key in train_kwargs:
            raise ValueError(f"{key} is set per run by run_ablation; do not pass it.")
    train_kwargs.setdefault("eval_every", 0)
    runs = []
    for ds in datasets:
        for variant in variants:
            run_dir = os.path.join(output_dir, _slug(ds.name), variant)
            # Only mmga has configurable part groups (TrainConfig refuses parts for the others).
            own = {"parts": tuple(parts)} if parts is not None and variant == "mmga" else {}
            # The rows without mask supervision do not read the masks (and are not told them).
            masks = ds.mask_root if VARIANTS[variant]["supervised"] else None
            config = TrainConfig(
                dataset_root=ds.root,
                output_dir=run_dir,
                mask_root=masks,
                dataset=ds.layout,
                variant=variant,
                verbose=verbose,
                **own,
                **train_kwargs,
            )
            config.validate()  # every run's settings before the first one trains
            runs.append((ds, variant, config, run_settings(config, ds.provenance)))
    # All finished runs are checked before the first one is trained.
    done = {(ds.name, variant): reusable_metrics(c.output_dir, settings) for ds, variant, c, settings in runs}
    os.makedirs(output_dir, exist_ok=True)
    results = {ds.name: {} for ds in datasets}
    for ds, variant, config, settings in runs:
        metrics_path = os.path.join(config.output_dir, "metrics.json")
        if done[ds.name, variant] is not None:
            results[ds.name][variant] = done[ds.name, variant]
            continue
        print(f"== {ds.name}: {ROW_NAMES[variant]} ==")
        start = time.perf_counter()
        model, _ = train(config)
        metrics = dataset_metrics(model, ds.root, ds.layout, verbose=False)
        summary = {m: float(metrics[m]) for m in METRICS} | {"train_time_s": time.perf_counter() - start}
        with open(metrics_path, "w") as f:
            json.dump(summary | {"settings": settings}, f, indent=2)
        results[ds.name][variant] = summary
        print(f"   rank-1 {summary['rank1']:.1%}  mAP {summary['mAP']:.1%}")
        # Five ResNet50s in one process: free each before the next.
        del model
        keras.backend.clear_session()
    table = format_ablation_table(results, variants)
    with open(os.path.join(output_dir, "ablation.md"), "w") as f:
        f.write(table + "\n")
    return results, table


def run_settings(config, provenance=None):
    """What decides a run's metrics: its `TrainConfig` (less `_UNCOMPARED`) and the data's provenance.

    Returned in its JSON form (tuples as lists), as stored in `metrics.json`.
    """
    settings = {k: v for k, v in dataclasses.asdict(config).items() if k not in _UNCOMPARED}
    settings["data_provenance"] = provenance
    return json.loads(json.dumps(settings, default=str))


def reusable_metrics(run_dir, settings):
    """The finished metrics of `run_dir` if they were made with `settings`; None if it has none.

    Also checks an unfinished run there (resume state, no metrics yet):
    resuming it with other settings would train one model with two recipes
    (`train` itself only refuses changes that break the resume, such as the
    input size, not a new learning rate or budget).

    Raises:
        ValueError: the folder holds metrics or a started run of other (or
            unrecorded) settings, naming what differs and what to do.
    """
    metrics_path = os.path.join(run_dir, "metrics.json")
    if os.path.isfile(metrics_path):
        with open(metrics_path) as f:
            stored = json.load(f)
        saved = stored.pop("settings", None)
        if saved is None:
            raise ValueError(
                f"{metrics_path!r} records no settings (an older version wrote it), so it may come from "
                "another recipe. Delete that file to re-evaluate the finished run in the folder (trusting "
                f"it was trained with the current settings), or delete {run_dir!r} to retrain it."
            )
        differ = _differences(saved, settings)
        if not differ:
            return stored
        raise ValueError(
            f"{metrics_path!r} holds metrics of other settings ({differ}). One ablation folder holds one "
            "recipe, so that its table compares like with like: use another output folder for these "
            f"settings, or delete {run_dir!r} to retrain this variant with them."
        )
    config_path = os.path.join(run_dir, "config.json")
    if ResumableBackup.completed_epochs(os.path.join(run_dir, "backup")) and os.path.isfile(config_path):
        with open(config_path) as f:
            saved = json.load(f)
        started = {k: v for k, v in settings.items() if k != "data_provenance"}
        differ = _differences({k: saved[k] for k in started if k in saved}, started)
        if differ:
            raise ValueError(
                f"{run_dir!r} holds an unfinished run of other settings ({differ}); resuming it would train "
                "one model with both. Use another output folder for these settings, or delete that folder "
                "to start this variant over."
            )
    return None


def _differences(saved, current):
    """`key: saved there, current now` for each setting that differs; "" when none do.

    A key missing from `saved` (a `TrainConfig` field added since) matches
    what the saved run used: the field's default, or for `epoch` "images"
    (the only definition before the field existed).
    """
    defaults = json.loads(
        json.dumps(
            {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.default is not dataclasses.MISSING}
            | {"data_provenance": None, "epoch": "images"},
            default=str,
        )
    )
    keys = sorted(set(saved) | set(current))
    pairs = [(k, saved.get(k, defaults.get(k)), current.get(k, defaults.get(k))) for k in keys]
    return "; ".join(f"{k}: {a!r} there, {b!r} now" for k, a, b in pairs if a != b)


def format_ablation_table(results, variants=VARIANT_ORDER):
    """Markdown table in the layout of the paper's Table 1 (rank-1 and mAP per dataset, %).

    Args:
        results: dataset name → variant → metrics (`rank1`, `mAP` as fractions).
        variants: rows, in order.

    Example:
    ```python
    print(format_ablation_table({"Market-1501": {"mmga": {"rank1": 0.95, "mAP": 0.872}}}, ["mmga"]))
    ```
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
