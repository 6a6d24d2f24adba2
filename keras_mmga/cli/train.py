"""`keras-mmga train`: trains an MMGA variant on a Market-1501 / DukeMTMC-reID layout dataset.

Defaults are the paper's recipe (384x128, P=24 x K=4, SGD lr 0.1 / 0.05 for the
backbone, x0.5 every 90 epochs, 900 identity epochs, margin 0.3, lambdas
0.5 / 2.0 / 0.1). Re-running the same command resumes from the last completed
epoch.

  keras-mmga train --data Market-1501 --masks Market-1501-masks --output runs/mmga

Multi-worker: run the same command on every machine, each with its own
TF_CONFIG (same cluster list, its own task index) and --strategy multiworker.
"""

import argparse
import sys

# TF-free: the defaults come from the configuration dataclass, not the engine.
from keras_mmga.engine.config import DATASETS, DRESS_GROUPS, EPOCH_DEFINITIONS, STRATEGIES, VARIANT_NAMES, \
    TrainConfig, defaults

D = defaults(TrainConfig)


def add_arguments(p):
    """The training flags on parser `p` (argparse only)."""
    p.description = __doc__
    p.formatter_class = _Formatter
    g = p.add_argument_group("data")
    g.add_argument("--data", required=True,
                   help="dataset folder (bounding_box_train/, bounding_box_test/, query/) or a folder holding "
                        "it (e.g. Market-1501-v15.09.15/)")
    g.add_argument("--masks", help="mask root mirroring the dataset folder, the one holding bounding_box_train/ "
                                   "(needed by wmga, dmga, mmga)")
    g.add_argument("--dataset", default=D["dataset"], choices=DATASETS, help="file-name layout")
    g.add_argument("--mask-format", default=D["mask_format"], choices=["lip", "binary"], help="mask files")
    g.add_argument("--missing-masks", default=D["missing_masks"], choices=["error", "ignore"],
                   help="'ignore': images without a mask add no attention loss")
    g.add_argument("--dress-group", default=D["dress_group"], choices=DRESS_GROUPS,
                   help="group of LIP's dress and jumpsuit labels (paper: upper)")
    g.add_argument("--height", type=int, default=D["image_size"][0], help="input height (divisible by 16)")
    g.add_argument("--width", type=int, default=D["image_size"][1], help="input width (divisible by 16)")
    g.add_argument("-P", "--num-identities", type=int, default=D["num_identities"], help="identities per batch")
    g.add_argument("-K", "--num-instances", type=int, default=D["num_instances"], help="images per identity")
    g.add_argument("--no-replacement", action="store_true", help="identities with < K images are an error")
    g.add_argument("--erasing-probability", type=float, default=D["erasing_probability"],
                   help="probability of random erasing")
    g.add_argument("--cache-images", action="store_true",
                   help="keep the decoded, resized training images in memory (1.9 GB for Market-1501 at 384x128)")

    g = p.add_argument_group("model and losses")
    g.add_argument("--variant", default=D["variant"], choices=VARIANT_NAMES, help="ablation variant")
    add_parts_argument(g)
    g.add_argument("--backbone-weights", default=D["backbone_weights"],
                   help="'imagenet', 'none' (random init) or a path to the ResNet50 notop .h5")
    g.add_argument("--margin", type=float, default=D["triplet_margin"], help="triplet margin m")
    g.add_argument("--triplet-weight", type=float, default=D["triplet_weight"], help="lambda1")
    g.add_argument("--attention-weight", type=float, default=D["attention_weight"], help="lambda2")
    g.add_argument("--part-attention-weight", type=float, default=D["part_attention_weight"], help="lambda0")

    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, default=D["epochs"], help="total epochs")
    g.add_argument("--epoch", default=D["epoch"], choices=EPOCH_DEFINITIONS,
                   help="what one epoch is: 'identities' = every training identity once, K images each "
                        "(ceil(#ids / P) steps; the paper recipe), 'images' = about one pass over the training "
                        "images (~4x longer on Market-1501). Decay, --eval-every and resume count these epochs")
    g.add_argument("--steps-per-epoch", type=int, default=None, help="fix the epoch's length (default: one --epoch)")
    g.add_argument("--lr", type=float, default=D["learning_rate"], help="learning rate of the heads")
    g.add_argument("--backbone-lr-scale", type=float, default=D["backbone_lr_scale"], help="backbone lr / lr")
    g.add_argument("--momentum", type=float, default=D["momentum"], help="SGD momentum")
    g.add_argument("--weight-decay", type=float, default=D["weight_decay"], help="L2, as PyTorch applies it")
    g.add_argument("--lr-decay-epochs", type=int, default=D["lr_decay_epochs"], help="epochs between decays")
    g.add_argument("--lr-decay-rate", type=float, default=D["lr_decay_rate"], help="factor of each decay")
    g.add_argument("--seed", type=int, default=D["seed"], help="seeds initialisation, sampling, augmentation")
    g.add_argument("--deterministic", action="store_true", help="also enable TensorFlow op determinism")

    g = p.add_argument_group("run")
    g.add_argument("--output", required=True, help="run folder: checkpoints, logs, resume state")
    g.add_argument("--eval-every", type=int, default=D["eval_every"], help="evaluate every N epochs (0: never)")
    g.add_argument("--eval-batch-size", type=int, default=D["eval_batch_size"], help="images per inference batch")
    g.add_argument("--strategy", default=D["strategy"], choices=STRATEGIES,
                   help="one device, all local GPUs, or the machines of TF_CONFIG")
    g.add_argument("--sync-batchnorm", action="store_true", help="BatchNorm statistics over all replicas")
    g.add_argument("--per-replica-triplet", action="store_true",
                   help="mine triplets per replica instead of over the all-gathered global batch")
    g.add_argument("--mixed-precision", action="store_true", help="float16 on GPU, bfloat16 on CPU")
    g.add_argument("--verbose", type=int, default=D["verbose"], choices=[0, 1, 2], help="Keras progress")
    return p


def parse_parts(text):
    """`"head,torso,legs,feet"` → `("head", "torso", "legs", "feet")` (the `--parts` value)."""
    parts = tuple(name.strip() for name in text.split(","))
    if not all(parts):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated part-group names such as head,torso,legs,feet, got {text!r}")
    return parts


def add_parts_argument(group):
    """`--parts` (shared with `keras-mmga ablation`)."""
    group.add_argument("--parts", type=parse_parts, default=None, metavar="NAME,NAME,...",
                       help="part groups of variant mmga, comma-separated (e.g. head,torso,legs,feet; see "
                            "keras_mmga.data.masks.PART_GROUPS); default: the model's upper,bottom")


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The description as written, and every default in the help."""


def config_from_args(a):
    """Parsed arguments → `TrainConfig`."""
    return TrainConfig(
        dataset_root=a.data, output_dir=a.output, mask_root=a.masks, dataset=a.dataset, variant=a.variant,
        image_size=(a.height, a.width), num_identities=a.num_identities, num_instances=a.num_instances,
        parts=a.parts, epochs=a.epochs, epoch=a.epoch, steps_per_epoch=a.steps_per_epoch, learning_rate=a.lr,
        backbone_lr_scale=a.backbone_lr_scale, momentum=a.momentum, weight_decay=a.weight_decay,
        lr_decay_epochs=a.lr_decay_epochs, lr_decay_rate=a.lr_decay_rate, triplet_margin=a.margin,
        triplet_weight=a.triplet_weight, attention_weight=a.attention_weight,
        part_attention_weight=a.part_attention_weight,
        backbone_weights=None if a.backbone_weights.lower() == "none" else a.backbone_weights,
        mask_format=a.mask_format, dress_group=a.dress_group, missing_masks=a.missing_masks,
        replacement=not a.no_replacement, erasing_probability=a.erasing_probability,
        cache_images=a.cache_images, eval_every=a.eval_every, eval_batch_size=a.eval_batch_size,
        strategy=a.strategy, sync_batchnorm=a.sync_batchnorm, cross_replica_triplet=not a.per_replica_triplet,
        mixed_precision=a.mixed_precision, seed=a.seed, deterministic=a.deterministic, verbose=a.verbose,
    )


def parse_args(argv=None):
    """Command line (without the subcommand) → `TrainConfig`."""
    return config_from_args(add_arguments(argparse.ArgumentParser(prog="keras-mmga train")).parse_args(argv))


def run(args):
    config = config_from_args(args)
    try:
        # Settings first: a bad value is reported before TensorFlow loads.
        config.validate()
        from keras_mmga.engine.trainer import TrainingDiverged, train
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        train(config)
    except TrainingDiverged as err:
        print(f"error: {err}", file=sys.stderr)
        return 3
    except (ValueError, FileNotFoundError) as err:
        # Pre-flight problems (configuration, data, masks): the message says it all.
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
