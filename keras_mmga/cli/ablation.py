"""`keras-mmga ablation`: trains the five variants of the paper's Table 1 with one budget and seed; writes the table.

  # the paper's study (repeat --data/--masks/--name for DukeMTMC-reID):
  keras-mmga ablation --output runs/ablation \\
      --data Market-1501 --masks Market-1501-masks --name Market-1501
  # on the embedded synthetic dataset, small budget, no downloads (docs/TRAINING.md):
  keras-mmga ablation --output runs/ablation_synthetic --synthetic --height 128 --width 64 \\
      --backbone-weights none --epochs 8 --steps-per-epoch 20 --epoch images -P 8 -K 4 --lr 0.02

Each run is a normal, resumable run folder (OUTPUT/<dataset>/<variant>/); an
interrupted ablation continues where it stopped. An OUTPUT folder holds one
recipe: re-running it with other settings (--epochs, --epoch, --lr, --height,
..., --synthetic-ids) is an error naming them; use another --output. The table
goes to OUTPUT/ablation.md (and --table).
"""

import argparse
import os
import sys

from keras_mmga.cli.train import add_parts_argument
from keras_mmga.engine.config import DATASETS, EPOCH_DEFINITIONS, VARIANT_NAMES, TrainConfig, defaults

D = defaults(TrainConfig)


def add_arguments(p):
    p.description = __doc__
    p.formatter_class = _Formatter
    p.add_argument("--output", required=True, help="ablation folder")
    p.add_argument("--data", action="append", default=[], help="dataset root (repeatable)")
    p.add_argument("--masks", action="append", default=[], help="mask root of each --data")
    p.add_argument("--name", action="append", default=[], help="column name of each --data (e.g. Market-1501)")
    p.add_argument("--layout", action="append", default=[], choices=DATASETS,
                   help="file-name layout of each --data (default market1501)")
    p.add_argument("--synthetic", action="store_true",
                   help="write the embedded synthetic dataset to OUTPUT/data and use it")
    p.add_argument("--synthetic-ids", type=int, default=100, help="train (and test) identities of --synthetic")
    p.add_argument("--missing-masks", default=D["missing_masks"], choices=["error", "ignore"],
                   help="'ignore': images without a mask (e.g. no person found by `keras-mmga masks`) add no "
                        "attention loss")
    p.add_argument("--variants", nargs="+", default=list(VARIANT_NAMES), choices=VARIANT_NAMES,
                   help="rows of the table")
    add_parts_argument(p)
    p.add_argument("--height", type=int, default=D["image_size"][0], help="input height")
    p.add_argument("--width", type=int, default=D["image_size"][1], help="input width")
    p.add_argument("-P", "--num-identities", type=int, default=D["num_identities"], help="identities per batch")
    p.add_argument("-K", "--num-instances", type=int, default=D["num_instances"], help="images per identity")
    p.add_argument("--epochs", type=int, default=D["epochs"], help="total epochs")
    p.add_argument("--epoch", default=D["epoch"], choices=EPOCH_DEFINITIONS,
                   help="what one epoch is (see `keras-mmga train --help`)")
    p.add_argument("--steps-per-epoch", type=int, help="fix the epoch's length (default: one --epoch)")
    p.add_argument("--lr", type=float, default=D["learning_rate"], help="learning rate of the heads")
    p.add_argument("--lr-decay-epochs", type=int, default=D["lr_decay_epochs"], help="epochs between decays")
    p.add_argument("--backbone-weights", default=D["backbone_weights"], help="'imagenet', 'none' or a path")
    p.add_argument("--seed", type=int, default=D["seed"], help="one seed for every run")
    p.add_argument("--table", help="also write the markdown table to this file")
    p.add_argument("--verbose", type=int, default=2, choices=[0, 1, 2], help="Keras progress")
    return p


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    pass


def _error(message):
    print(f"error: {message}", file=sys.stderr)
    return 2


def run(a):
    if len(a.masks) != len(a.data) or len(a.name) not in (0, len(a.data)) or len(a.layout) not in (0, len(a.data)):
        return _error("give one --masks (and optionally one --name / --layout) per --data")
    if a.synthetic and a.synthetic_ids < 1:
        return _error(f"--synthetic-ids must be ≥ 1, got {a.synthetic_ids}")
    if not a.synthetic and not a.data:
        return _error("give --data/--masks or --synthetic")
    from keras_mmga.engine.ablation import AblationDataset, run_ablation
    from keras_mmga.engine.demo import prepare_synthetic_dataset

    try:
        datasets = []
        if a.synthetic:
            # Rewritten when --synthetic-ids or --seed changed; recorded with each run's metrics.
            spec = {"num_train_ids": a.synthetic_ids, "num_test_ids": a.synthetic_ids, "seed": a.seed}
            images, masks = prepare_synthetic_dataset(os.path.join(a.output, "data"), **spec)
            datasets.append(AblationDataset("Synthetic", images, masks, provenance={"synthetic": spec}))
        for i, root in enumerate(a.data):
            name = a.name[i] if a.name else os.path.basename(os.path.normpath(root))
            datasets.append(AblationDataset(name, root, a.masks[i], a.layout[i] if a.layout else "market1501"))
        _, table = run_ablation(
            datasets, a.output, variants=a.variants, verbose=a.verbose, parts=a.parts,
            image_size=(a.height, a.width),
            num_identities=a.num_identities, num_instances=a.num_instances, epochs=a.epochs, epoch=a.epoch,
            steps_per_epoch=a.steps_per_epoch, missing_masks=a.missing_masks, learning_rate=a.lr, lr_decay_epochs=a.lr_decay_epochs,
            backbone_weights=None if a.backbone_weights.lower() == "none" else a.backbone_weights, seed=a.seed,
        )
    except (ValueError, FileNotFoundError) as err:
        return _error(err)
    print(table)
    if a.table:
        with open(a.table, "w") as f:
            f.write(table + "\n")
    return 0
