"""Trains an MMGA variant on a Market-1501 / DukeMTMC-reID layout dataset.

Defaults are the paper's recipe. Re-running the same command resumes an
interrupted run from its last completed epoch. Multi-worker: start the same
command on every machine with its own TF_CONFIG and --strategy multiworker.
"""

import argparse
import dataclasses
import sys

from keras_mmga.engine import TrainConfig, TrainingDiverged, train


def parse_args(argv=None):
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="dataset root (bounding_box_train/, bounding_box_test/, query/)")
    p.add_argument("--masks", help="mirrored parsing-mask root (wmga/dmga/mmga)")
    p.add_argument("--output", required=True, help="run folder: checkpoints, logs, resume state")
    p.add_argument("--dataset", default=defaults["dataset"], choices=["market1501", "dukemtmcreid"])
    p.add_argument("--variant", default=defaults["variant"], choices=["baseline", "baseline_att", "wmga", "dmga", "mmga"])
    p.add_argument("--height", type=int, default=384)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("-P", "--num-identities", type=int, default=defaults["num_identities"])
    p.add_argument("-K", "--num-instances", type=int, default=defaults["num_instances"])
    p.add_argument("--epochs", type=int, default=defaults["epochs"])
    p.add_argument("--steps-per-epoch", type=int, default=None)
    p.add_argument("--lr", type=float, default=defaults["learning_rate"])
    p.add_argument("--backbone-lr-scale", type=float, default=defaults["backbone_lr_scale"])
    p.add_argument("--momentum", type=float, default=defaults["momentum"])
    p.add_argument("--weight-decay", type=float, default=defaults["weight_decay"])
    p.add_argument("--lr-decay-epochs", type=int, default=defaults["lr_decay_epochs"])
    p.add_argument("--lr-decay-rate", type=float, default=defaults["lr_decay_rate"])
    p.add_argument("--margin", type=float, default=defaults["triplet_margin"])
    p.add_argument("--triplet-weight", type=float, default=defaults["triplet_weight"])
    p.add_argument("--attention-weight", type=float, default=defaults["attention_weight"])
    p.add_argument("--part-attention-weight", type=float, default=defaults["part_attention_weight"])
    p.add_argument("--backbone-weights", default="imagenet", help="'imagenet', 'none' or a path to the notop .h5")
    p.add_argument("--mask-format", default="lip", choices=["lip", "binary"])
    p.add_argument("--missing-masks", default="error", choices=["error", "ignore"])
    p.add_argument("--no-replacement", action="store_true", help="fail if an identity has fewer than K images")
    p.add_argument("--eval-every", type=int, default=defaults["eval_every"])
    p.add_argument("--strategy", default="one", choices=["one", "mirrored", "multiworker"])
    p.add_argument("--sync-batchnorm", action="store_true")
    p.add_argument("--mixed-precision", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--verbose", type=int, default=1, choices=[0, 1, 2])
    a = p.parse_args(argv)
    return TrainConfig(
        dataset_root=a.data, output_dir=a.output, mask_root=a.masks, dataset=a.dataset, variant=a.variant,
        image_size=(a.height, a.width), num_identities=a.num_identities, num_instances=a.num_instances,
        epochs=a.epochs, steps_per_epoch=a.steps_per_epoch, learning_rate=a.lr,
        backbone_lr_scale=a.backbone_lr_scale, momentum=a.momentum, weight_decay=a.weight_decay,
        lr_decay_epochs=a.lr_decay_epochs, lr_decay_rate=a.lr_decay_rate, triplet_margin=a.margin,
        triplet_weight=a.triplet_weight, attention_weight=a.attention_weight,
        part_attention_weight=a.part_attention_weight,
        backbone_weights=None if a.backbone_weights.lower() == "none" else a.backbone_weights,
        mask_format=a.mask_format, missing_masks=a.missing_masks, replacement=not a.no_replacement,
        eval_every=a.eval_every, strategy=a.strategy, sync_batchnorm=a.sync_batchnorm,
        mixed_precision=a.mixed_precision, seed=a.seed, verbose=a.verbose,
    )


def main(argv=None):
    try:
        train(parse_args(argv))
    except TrainingDiverged as err:
        print(f"error: {err}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
