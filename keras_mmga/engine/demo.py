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
from keras_mmga.engine.evaluator import METRICS, evaluate_split, format_results, write_pictures
from keras_mmga.engine.trainer import TrainConfig, build_model, train

# Settings of the synthetic dataset in a folder (see `prepare_synthetic_dataset`).
_SYNTHETIC_MARKER = "synthetic.json"


@dataclasses.dataclass
class DemoConfig:
    """A reduced recipe that shows learning on 2 CPU cores in about 5 minutes.

    Differences from the paper's recipe, all for time: a 64×32 input (4×2
    attention maps), random initialisation (no downloads), P×K = 8×4, 400 SGD
    steps at a learning rate of 0.01 (0.1 diverges from random weights at this
    batch size), halved for the last 2 epochs.

    Args:
        out_dir: where the data, the run, the pictures and `results.json` go.
        export_dir: where the ONNX model goes.
        num_train_ids, num_test_ids: identities of the synthetic dataset.
        image_size: model input `(H, W)`.
        num_identities, num_instances: P and K.
        epochs, steps_per_epoch: the schedule.
        learning_rate: base learning rate (backbone: half of it).
        lr_decay_epochs: epochs between halvings.
        variant: the model variant.
        seed: seeds the dataset, the initialisation and the sampling.
    """

    out_dir: str = "demo_output"
    export_dir: str = "exported"
    num_train_ids: int = 100
    num_test_ids: int = 100
    image_size: tuple = (64, 32)
    num_identities: int = 8
    num_instances: int = 4
    epochs: int = 8
    steps_per_epoch: int = 50
    learning_rate: float = 0.01
    lr_decay_epochs: int = 6
    variant: str = "mmga"
    seed: int = 0


def prepare_synthetic_dataset(data_dir, num_train_ids=100, num_test_ids=100, seed=0):
    """Writes the synthetic dataset to `data_dir` unless the same one is already there.

    `data_dir/synthetic.json` records the settings of the dataset on disk and
    is written last, so it also marks a finished write. With other settings
    (or no marker: an interrupted or older write) the dataset is rewritten:
    the identity counts and the seed decide every image, so reusing a folder
    made with other values would silently train and evaluate on other data.
    Only the generator's own entries (`images/`, `masks/`, the marker) are
    removed; anything else in `data_dir` is left alone.

    Args:
        data_dir: str, the dataset folder.
        num_train_ids, num_test_ids, seed: see `synthetic.write_dataset`.

    Returns:
        `(images_root, masks_root)`.

    Example:
    >>> images, masks = prepare_synthetic_dataset("runs/ablation/data", 100, 100, seed=0)
    """
    data_dir = os.fspath(data_dir)
    marker = os.path.join(data_dir, _SYNTHETIC_MARKER)
    roots = os.path.join(data_dir, "images"), os.path.join(data_dir, "masks")
    spec = {"num_train_ids": int(num_train_ids), "num_test_ids": int(num_test_ids), "seed": int(seed)}
    if os.path.isfile(marker):
        with open(marker) as f:
            if json.load(f) == spec:
                return roots
        os.remove(marker)  # first, so that an interrupted rewrite is not taken for a finished one
    for root in roots:
        shutil.rmtree(root, ignore_errors=True)
    print(f"Writing the synthetic dataset to {data_dir}/ ...")
    roots = synthetic.write_dataset(data_dir, spec["num_train_ids"], spec["num_test_ids"], seed=spec["seed"])
    with open(marker, "w") as f:
        json.dump(spec, f)
    return roots


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
    >>> report = run_demo(DemoConfig(out_dir="/tmp/demo", epochs=2))
    >>> print(report["table"])
    """
    config = config or DemoConfig()
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
    train_config = TrainConfig(
        dataset_root=images,
        output_dir=run_dir,
        mask_root=masks,
        variant=config.variant,
        image_size=tuple(config.image_size),
        num_identities=config.num_identities,
        num_instances=config.num_instances,
        epochs=config.epochs,
        steps_per_epoch=config.steps_per_epoch,
        learning_rate=config.learning_rate,
        lr_decay_epochs=config.lr_decay_epochs,
        backbone_weights=None,
        eval_every=0,
        seed=config.seed,
        verbose=2,
    )

    # The untrained model is the one training starts from: train() seeds the
    # same way right before building its model.
    keras.utils.set_random_seed(config.seed)
    untrained = build_model(train_config, data.num_train_pids)
    print("Evaluating the untrained model ...")
    before, _ = evaluate_split(untrained, data.query, data.gallery, config.image_size, verbose=False)
    del untrained
    keras.backend.clear_session()
    t = lap("evaluate untrained", t)

    steps = config.epochs * config.steps_per_epoch
    print(f"Training {config.variant} for {config.epochs} epochs x {config.steps_per_epoch} steps "
          f"(P x K = {config.num_identities} x {config.num_instances}, {config.image_size[0]}x{config.image_size[1]}) ...")
    model, history = train(train_config)
    t = lap("train", t)

    print("Evaluating the trained model ...")
    after, distmat = evaluate_split(model, data.query, data.gallery, config.image_size, verbose=False)
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
    print(f"\nSynthetic split: {after['num_valid_queries']} queries, {len(data.gallery)} gallery images "
          f"({len({p for _, p, _ in data.gallery})} identities incl. distractors); {steps} training steps.")
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
