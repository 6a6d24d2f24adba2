"""`keras-mmga ablation`: trains the five variants of the paper's Table 1 with one budget and seed; writes the table.

  # the paper's study (repeat --data/--masks/--name for DukeMTMC-reID):
  keras-mmga ablation --output runs/ablation \\
      --data Market-1501 --masks Market-1501-masks --name Market-1501
  # on the embedded synthetic dataset, small budget, no downloads (docs/TRAINING.md):
  keras-mmga ablation --output runs/ablation_synthetic --synthetic --height 128 --width 64 \\
      --backbone-weights none --epochs 8 --steps-per-epoch 20 --epoch images -P 8 -K 4 --lr 0.02
  # the same synthetic set with the benchmarks' budget (--recipe: a named budget; flags beside it win):
  keras-mmga ablation --output runs/ablation_short --synthetic --recipe synthetic_ablation

Each run is a normal, resumable run folder (OUTPUT/<dataset>/<variant>/); an
interrupted ablation continues where it stopped. An OUTPUT folder holds one
recipe: re-running it with other settings (--epochs, --epoch, --lr, --height,
..., --synthetic-ids) is an error naming them; use another --output. The table
goes to OUTPUT/ablation.md (and --table).
"""

import os

from keras_mmga.cli.config_flags import add_config_flags, config_kwargs
from keras_mmga.cli.shared import check_positive
from keras_mmga.engine.config import TrainConfig, defaults
from keras_mmga.settings import DATASETS, VARIANT_NAMES

# Set per run (dataset, variant) or by this command's own flags (verbosity).
_PER_RUN = ("dataset_root", "output_dir", "mask_root", "dataset", "variant", "verbose")


def add_arguments(p):
    """The ablation's own flags, then every shared `TrainConfig` field as in `keras-mmga train`."""
    p.description = __doc__
    g = p.add_argument_group("ablation")
    g.add_argument("--output", required=True, help="ablation folder")
    g.add_argument("--data", action="append", default=[], help="dataset root (repeatable)")
    g.add_argument("--masks", action="append", default=[], help="mask root of each --data")
    g.add_argument("--name", action="append", default=[], help="column name of each --data (e.g. Market-1501)")
    g.add_argument(
        "--dataset",
        action="append",
        default=[],
        choices=DATASETS,
        help="file-name layout of each --data (default market1501)",
    )
    g.add_argument(
        "--synthetic",
        action="store_true",
        help="write the embedded synthetic dataset to OUTPUT/data and use it (drawn with --seed)",
    )
    g.add_argument("--synthetic-ids", type=int, default=100, help="train (and test) identities of --synthetic")
    g.add_argument(
        "--variants",
        nargs="+",
        default=list(VARIANT_NAMES),
        choices=VARIANT_NAMES,
        help="rows of the table (--parts sets the mmga row's part groups)",
    )
    g.add_argument("--table", help="also write the markdown table to this file")
    g.add_argument(
        "--progress",
        type=int,
        default=2,
        choices=[0, 1, 2],
        help="Keras progress: 0 none, 1 a progress bar, 2 one line per epoch (--quiet: 0)",
    )
    # Runs are evaluated once, at their end, unless --eval-every is given.
    return add_config_flags(p, exclude=_PER_RUN)


def run(a):
    from keras_mmga.cli import UsageError

    if len(a.masks) != len(a.data) or len(a.name) not in (0, len(a.data)) or len(a.dataset) not in (0, len(a.data)):
        raise UsageError("give one --masks (and optionally one --name / --dataset) per --data")
    if a.synthetic:
        check_positive(a, "synthetic_ids")
    if not a.synthetic and not a.data:
        raise UsageError("give --data/--masks or --synthetic")
    from keras_mmga.engine.ablation import AblationDataset, run_ablation
    from keras_mmga.engine.demo import prepare_synthetic_dataset
    from keras_mmga.run_lock import RunLock, check_output_file, check_output_folder

    # Only what the command line or --recipe sets: run_ablation's own defaults hold for the rest.
    shared = config_kwargs(a, exclude=_PER_RUN, given_only=True)
    parts = shared.pop("parts", None)
    check_output_folder(a.output, "--output")
    if a.table:
        check_output_file(a.table, "--table")
    # One ablation per folder (each run's own folder is locked by its training as well).
    with RunLock(a.output, "ablation"):
        datasets = []
        if a.synthetic:
            # Rewritten when --synthetic-ids or --seed changed; recorded with each run's metrics.
            seed = shared.get("seed", defaults(TrainConfig)["seed"])
            spec = {"num_train_ids": a.synthetic_ids, "num_test_ids": a.synthetic_ids, "seed": seed}
            images, masks = prepare_synthetic_dataset(os.path.join(a.output, "data"), **spec)
            datasets.append(AblationDataset("Synthetic", images, masks, provenance={"synthetic": spec}))
        for i, root in enumerate(a.data):
            name = a.name[i] if a.name else os.path.basename(os.path.normpath(root))
            datasets.append(AblationDataset(name, root, a.masks[i], a.dataset[i] if a.dataset else "market1501"))
        _, table = run_ablation(
            datasets, a.output, variants=a.variants, verbose=0 if a.quiet else a.progress, parts=parts, **shared
        )
    print(table)
    if a.table:
        with open(a.table, "w") as f:
            f.write(table + "\n")
    return 0
