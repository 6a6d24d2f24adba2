"""The main job, `make demo`: synthetic data → train MMGA → evaluate → pictures → ONNX, on a CPU.

Nothing is downloaded: the dataset is drawn by `keras_mmga.data.synthetic`
and the backbone starts from random weights. The untrained model is evaluated
on the same split first, so the printed table shows what training bought.
"""

import dataclasses
import json
import os
import shutil
import time

import keras
import numpy as np

from keras_mmga.data import load_dataset, synthetic
from keras_mmga.engine.config import DemoConfig  # noqa: F401  (re-exported)
from keras_mmga.engine.trainer import build_model, train
from keras_mmga.evaluation.model_metrics import METRICS, format_results, split_metrics
from keras_mmga.run_lock import check_output_folder
from keras_mmga.visualize import write_pictures


def prepare_synthetic_dataset(data_dir, num_train_ids=100, num_test_ids=100, seed=0):
    """Writes the synthetic dataset to `data_dir` unless the same one is already there.

    `data_dir/synthetic.json` records the settings of the dataset on disk and
    is written last, so it also marks a finished write. With other settings
    (or no marker: an interrupted or older write) the dataset is rewritten
    (`synthetic.write_dataset(..., overwrite=True)`): the identity counts and
    the seed decide every image, so reusing a folder made with other values
    would silently train and evaluate on other data. Only the generator's own
    entries (`images/`, `masks/`, the marker) are removed; anything else in
    `data_dir` is left alone.

    Args:
        data_dir: str, the dataset folder.
        num_train_ids, num_test_ids, seed: see `synthetic.write_dataset`.

    Returns:
        `(images_root, masks_root)`.

    Example:
    ```python
    images, masks = prepare_synthetic_dataset("runs/ablation/data", 100, 100, seed=0)
    ```
    """
    data_dir = os.fspath(data_dir)
    spec = {"num_train_ids": int(num_train_ids), "num_test_ids": int(num_test_ids), "seed": int(seed)}
    saved = synthetic.dataset_settings(data_dir)
    if saved is None or any(saved.get(k) != v for k, v in spec.items()):
        print(f"Writing the synthetic dataset to {data_dir}/ ...")
    return synthetic.write_dataset(data_dir, **spec, overwrite=True)


def run_demo(config=None, export=True):
    """Runs the demo and returns what it printed, as data.

    Args:
        config: a `DemoConfig` (defaults: the `make demo` settings).
        export: export the trained model to ONNX (`keras_mmga.export`).

    Returns:
        Dict with `results` (`"untrained"` / `"trained <variant>"` → metrics),
        `table` (markdown), `timings` (seconds per stage), `wall_time_s` and
        `onnx` (the export's report, or None).

    Example:
    ```python
    report = run_demo(DemoConfig(out_dir="/tmp/demo", epochs=2))
    print(report["table"])
    ```
    """
    config = config or DemoConfig()
    # Both folders before minutes of training: a file in the way is one error now, not at the export.
    check_output_folder(config.out_dir, "out_dir (--output)")
    check_output_folder(config.export_dir, "export_dir (--export-dir)")
    start = time.perf_counter()
    timings = {}

    def lap(name, t0):
        timings[name] = time.perf_counter() - t0
        return time.perf_counter()

    t = time.perf_counter()
    images, masks = prepare_synthetic_dataset(
        os.path.join(config.out_dir, "data"), config.num_train_ids, config.num_test_ids, config.seed
    )
    data = load_dataset(images, verbose=True)
    t = lap("data", t)

    run_dir = os.path.join(config.out_dir, "run")
    # A demo always trains from scratch (an old run folder would be resumed).
    shutil.rmtree(run_dir, ignore_errors=True)
    train_config = config.train_config(images, run_dir, mask_root=masks)

    # The untrained model is the one training starts from: train() seeds the
    # same way right before building its model.
    keras.utils.set_random_seed(config.seed)
    untrained = build_model(train_config, data.num_train_pids)
    print("Evaluating the untrained model ...")
    before, _ = split_metrics(untrained, data.query, data.gallery, config.image_size, verbose=False)
    del untrained
    keras.backend.clear_session()
    t = lap("evaluate untrained", t)

    steps = config.epochs * config.steps_per_epoch
    print(
        f"Training {config.variant} for {config.epochs} epochs x {config.steps_per_epoch} steps "
        f"(P x K = {config.num_identities} x {config.num_instances}, {config.image_size[0]}x{config.image_size[1]}) ..."
    )
    model, history = train(train_config)
    t = lap("train", t)

    print("Evaluating the trained model ...")
    after, distmat = split_metrics(model, data.query, data.gallery, config.image_size, verbose=False)
    t = lap("evaluate trained", t)
    pictures = os.path.join(config.out_dir, "pictures")
    write_pictures(model, data, distmat, pictures)
    t = lap("pictures", t)

    onnx_report = None
    if export:
        from keras_mmga.export import export_onnx

        onnx_report = export_onnx(
            os.path.join(run_dir, "latest.keras"),
            os.path.join(config.export_dir, f"demo_{config.variant}.onnx"),
            parity_images=_first_images(data.query, config.image_size, 4),
        )
        t = lap("export ONNX", t)

    results = {"untrained": before, f"trained {config.variant}": after}
    table = format_results(results)
    elapsed = time.perf_counter() - start
    print("\n" + table)
    print(
        f"\nSynthetic split: {after['num_valid_queries']} queries, {len(data.gallery)} gallery images "
        f"({len({p for _, p, _ in data.gallery})} identities incl. distractors); {steps} training steps."
    )
    print(f"Pictures: {pictures}/ (rankings/, attention/)   Checkpoint: {run_dir}/latest.keras")
    if onnx_report:
        print(f"ONNX: {onnx_report['onnx_path']} (max |ONNX Runtime - Keras| = {onnx_report['max_abs_diff']:.1e})")
    print("Time: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
    print(f"Wall time: {elapsed / 60:.1f} min")
    report = {
        "results": {k: {m: float(v[m]) for m in METRICS} for k, v in results.items()},
        "timings": timings,
        "wall_time_s": elapsed,
        "final_loss": float(history.history["loss"][-1]),
        "config": dataclasses.asdict(config),
    }
    with open(os.path.join(config.out_dir, "results.json"), "w") as f:
        json.dump(report, f, indent=2)
    return report | {"table": table, "onnx": onnx_report}


def _first_images(samples, image_size, count):
    """RGB float32 images of the first samples, resized as evaluation does (for the ONNX parity check)."""
    import tensorflow as tf

    from keras_mmga.data.pipeline import decode_resize

    return np.stack([decode_resize(tf.constant(p), image_size).numpy() for p, _, _ in samples[:count]])
