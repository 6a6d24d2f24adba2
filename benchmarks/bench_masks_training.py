"""Do generated masks serve training? mmga with generated masks vs ground-truth masks vs baseline_att.

Usage:
    nice -n 15 python benchmarks/bench_masks_training.py [--output runs/masks_training] [--epochs 15]
        [--steps-per-epoch 40] [--height 128 --width 64] [-P 8 -K 4] [--lr 0.01] [--seed 0] [--data-seed 0]

On the embedded synthetic set (100 + 100 identities, the ablation's
`--synthetic` data, data seed 0 whatever the training seed), with one budget and seed: `mmga` trained on masks made
by `keras_mmga.masks` from the training images, `mmga` on the set's
ground-truth LIP masks, and `baseline_att` (no mask supervision). Images with
no person found have no generated mask and are left out of the attention loss
(`missing_masks="ignore"`, used for every run so the recipe is one). Each run
is a resumable `run_ablation` folder: re-running the command continues where
it stopped, finished runs are not repeated. Prints and writes
OUTPUT/masks_training.md (rank-1 / mAP of each finished run).
"""

import argparse
import json
import os
import sys

from keras_mmga.cli.config_flags import add_config_flags, config_kwargs
from keras_mmga.engine import AblationDataset, run_ablation
from keras_mmga.engine.demo import prepare_synthetic_dataset
from keras_mmga.masks.writer import write_masks

# Set by this script per run; the other TrainConfig fields are flags.
SET_HERE = ("dataset_root", "output_dir", "mask_root", "dataset", "variant", "parts", "verbose")

RUNS = (("ground_truth", "mmga"), ("ground_truth", "baseline_att"), ("generated", "mmga"))
NAMES = {"generated": "Synthetic, generated masks", "ground_truth": "Synthetic, ground-truth masks"}


def main():
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--output", default="runs/masks_training")
    # Every TrainConfig flag of `keras-mmga train`, starting from the synthetic_ablation recipe.
    add_config_flags(p, exclude=SET_HERE, default_recipe="synthetic_ablation")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the synthetic set (the same set for every seed)")
    p.add_argument("--pose-model", default=None)
    p.add_argument(
        "--runs",
        default=",".join(f"{m}:{v}" for m, v in RUNS),
        help="comma-separated MASKS:VARIANT runs, in order (default: all three)",
    )
    a = p.parse_args()
    runs = [tuple(r.split(":")) for r in a.runs.split(",")]
    unknown = [r for r in runs if r not in RUNS]
    if unknown:
        p.error(f"--runs: unknown {unknown}; expected some of {[f'{m}:{v}' for m, v in RUNS]}")
    spec = {"num_train_ids": 100, "num_test_ids": 100, "seed": a.data_seed}
    images, gt_masks = prepare_synthetic_dataset(os.path.join(a.output, "data"), **spec)
    generated = os.path.join(a.output, "generated_masks")
    # Training reads only bounding_box_train's masks; resumable like any mask run.
    if any(m == "generated" for m, _ in runs):
        write_masks(
            os.path.join(images, "bounding_box_train"),
            os.path.join(generated, "bounding_box_train"),
            pose_model=a.pose_model,
        )
    datasets = {
        "generated": AblationDataset(
            NAMES["generated"], images, generated, provenance={"synthetic": spec, "masks": "keras_mmga.masks"}
        ),
        "ground_truth": AblationDataset(NAMES["ground_truth"], images, gt_masks, provenance={"synthetic": spec}),
    }
    recipe = config_kwargs(a, exclude=SET_HERE, given_only=True)
    lines = ["| masks | variant | rank-1 | mAP |", "|---|---|---|---|"]
    for key, variant in runs:
        results, _ = run_ablation([datasets[key]], os.path.join(a.output, key), variants=[variant], verbose=2, **recipe)
        metrics = results[NAMES[key]][variant]
        lines.append(
            f"| {key.replace('_', ' ') if variant == 'mmga' else 'none'} | {variant} | "
            f"{metrics['rank1']:.1%} | {metrics['mAP']:.1%} |"
        )
        table = "\n".join(lines)
        with open(os.path.join(a.output, "masks_training.md"), "w") as f:
            f.write(table + "\n\n" + json.dumps({"arguments": sys.argv[1:], "settings": recipe}, default=str) + "\n")
        print(table, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
