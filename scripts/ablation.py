"""Trains all five variants with the same budget and seed; writes a Table-1-style markdown table."""

import argparse

from keras_mmga.engine import TrainConfig
from keras_mmga.engine.ablation import run_ablation


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", required=True)
    p.add_argument("--masks", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--label", default="Market-1501", help="dataset name for the table header")
    p.add_argument("--height", type=int, default=384)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("-P", "--num-identities", type=int, default=24)
    p.add_argument("-K", "--num-instances", type=int, default=4)
    p.add_argument("--epochs", type=int, default=900)
    p.add_argument("--steps-per-epoch", type=int)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--lr-decay-epochs", type=int, default=90)
    p.add_argument("--backbone-weights", default="imagenet")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--table", help="also write the table to this file")
    a = p.parse_args(argv)
    config = TrainConfig(
        dataset_root=a.data, output_dir=a.output, mask_root=a.masks, image_size=(a.height, a.width),
        num_identities=a.num_identities, num_instances=a.num_instances, epochs=a.epochs,
        steps_per_epoch=a.steps_per_epoch, learning_rate=a.lr, lr_decay_epochs=a.lr_decay_epochs,
        backbone_weights=None if a.backbone_weights.lower() == "none" else a.backbone_weights,
        eval_every=0, seed=a.seed, verbose=2,
    )
    table, _ = run_ablation(config, dataset_label=a.label)
    print(table)
    if a.table:
        with open(a.table, "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    main()
