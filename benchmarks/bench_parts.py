"""Do finer body parts help? baseline_att vs mmga with 2, 3 and 4 part branches, several seeds.

Usage:
    nice -n 15 python benchmarks/bench_parts.py [--output runs/parts] [--seeds 0,1]
        [--configs baseline_att,mmga_2,mmga_3,mmga_4] [--epochs 15] [--steps-per-epoch 40]
        [--height 128 --width 64] [-P 8 -K 4] [--lr 0.01]

On the embedded synthetic set (100 + 100 identities, data seed 0, its
ground-truth LIP masks), one budget for every run; the seed varies the
initialisation and the batches. Configurations:

| name | model |
|---|---|
| `baseline_att` | attention, no mask supervision |
| `mmga_2` | the paper's parts: upper, bottom |
| `mmga_3` | head, torso, bottom |
| `mmga_4` | head, torso, legs, feet |

Each run is a resumable `run_ablation` folder (OUTPUT/seed<S>/<name>/...):
re-running the command continues where it stopped and finished runs are
not repeated. Runs go seed by seed (every configuration at the first seed,
then the next seed). Prints and writes OUTPUT/parts.md: rank-1 / mAP of each
run and, per configuration, mean ± half-range over the finished seeds.
"""

import argparse
import json
import os
import sys

import numpy as np

from keras_mmga.cli.config_flags import add_config_flags, config_kwargs
from keras_mmga.engine import AblationDataset, run_ablation
from keras_mmga.engine.demo import prepare_synthetic_dataset

# Set by this script per run; the other TrainConfig fields are flags.
SET_HERE = ("dataset_root", "output_dir", "mask_root", "dataset", "variant", "parts", "verbose", "seed")

CONFIGS = {
    "baseline_att": ("baseline_att", None),
    "mmga_2": ("mmga", ("upper", "bottom")),
    "mmga_3": ("mmga", ("head", "torso", "bottom")),
    "mmga_4": ("mmga", ("head", "torso", "legs", "feet")),
}
DATA_SPEC = {"num_train_ids": 100, "num_test_ids": 100, "seed": 0}
NAME = "Synthetic, ground-truth masks"


def summary_table(results):
    """Markdown: one row per configuration, each seed's rank-1 / mAP and the mean ± half-range."""
    seeds = sorted({s for runs in results.values() for s in runs})
    head = (
        "| model | parts | "
        + " | ".join(f"seed {s} rank-1 / mAP" for s in seeds)
        + " | rank-1 mean ± half-range | mAP mean ± half-range |"
    )
    lines = [head, "|" + "---|" * (4 + len(seeds))]
    for name, runs in results.items():
        variant, parts = CONFIGS[name]
        cells = [f"{runs[s]['rank1']:.1%} / {runs[s]['mAP']:.1%}" if s in runs else "—" for s in seeds]
        stats = []
        for metric in ("rank1", "mAP"):
            values = np.array([r[metric] for r in runs.values()])
            stats.append(
                f"{values.mean():.1%} ± {(values.max() - values.min()) / 2:.1%} (n={len(values)})"
                if len(values)
                else "—"
            )
        lines.append(f"| {variant} | {', '.join(parts) if parts else '—'} | " + " | ".join(cells + stats) + " |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--output", default="runs/parts")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--configs", default=",".join(CONFIGS))
    # Every TrainConfig flag of `keras-mmga train`, starting from the synthetic_ablation recipe.
    add_config_flags(p, exclude=SET_HERE, default_recipe="synthetic_ablation")
    a = p.parse_args()
    seeds = [int(s) for s in a.seeds.split(",")]
    names = a.configs.split(",")
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        p.error(f"--configs: unknown {unknown}; expected some of {list(CONFIGS)}")
    images, gt_masks = prepare_synthetic_dataset(os.path.join(a.output, "data"), **DATA_SPEC)
    dataset = AblationDataset(NAME, images, gt_masks, provenance={"synthetic": DATA_SPEC})
    recipe = config_kwargs(a, exclude=SET_HERE, given_only=True)
    results = {n: {} for n in names}
    for seed in seeds:
        for name in names:
            variant, parts = CONFIGS[name]
            extra = {"parts": parts} if parts and parts != ("upper", "bottom") else {}
            out, _ = run_ablation(
                [dataset],
                os.path.join(a.output, f"seed{seed}", name),
                variants=[variant],
                verbose=2,
                seed=seed,
                **recipe,
                **extra,
            )
            results[name][seed] = out[NAME][variant]
            table = summary_table(results)
            with open(os.path.join(a.output, "parts.md"), "w") as f:
                f.write(
                    table + "\n\n" + json.dumps({"arguments": sys.argv[1:], "settings": recipe}, default=str) + "\n"
                )
            print(table, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
