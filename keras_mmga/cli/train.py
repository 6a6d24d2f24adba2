"""`keras-mmga train`: trains an MMGA variant on a Market-1501 / DukeMTMC-reID layout dataset.

Defaults are the paper's recipe (384x128, P=24 x K=4, SGD lr 0.1 / 0.05 for the
backbone, x0.5 every 90 epochs, 900 identity epochs, margin 0.3, lambdas
0.5 / 2.0 / 0.1); --recipe starts from another named budget. Re-running the
same command resumes from the last completed epoch.

  keras-mmga train --data Market-1501 --masks Market-1501-masks --output runs/mmga
  keras-mmga train --recipe demo --data synthetic/images --masks synthetic/masks --output runs/quick

Multi-worker: run the same command on every machine, each with its own
TF_CONFIG (same cluster list, its own task index) and --strategy multiworker.
"""

import argparse
import sys

# TF-free: the flags come from the configuration dataclass, not the engine.
from keras_mmga.cli.config_flags import add_config_flags, config_kwargs
from keras_mmga.engine.config import TrainConfig


def add_arguments(p):
    """The training flags on parser `p`: one per `TrainConfig` field (argparse only)."""
    p.description = __doc__
    return add_config_flags(p)


def config_from_args(a):
    """Parsed arguments → `TrainConfig` (`--quiet`: no Keras progress either)."""
    kwargs = config_kwargs(a)
    if getattr(a, "quiet", False):
        kwargs["verbose"] = 0
    return TrainConfig(**kwargs)


def parse_args(argv=None):
    """Command line (without the subcommand) → `TrainConfig`."""
    return config_from_args(add_arguments(argparse.ArgumentParser(prog="keras-mmga train")).parse_args(argv))


def run(args):
    """Bad settings, paths and data are one `error:` line (exit 2, `keras_mmga.cli.main`); divergence exit 3."""
    config = config_from_args(args)
    # Settings and the output folder first: a bad value is reported before TensorFlow loads.
    config.validate()
    from keras_mmga.engine.trainer import TrainingDiverged, train

    try:
        train(config)
    except TrainingDiverged as err:
        print(f"error: {err}", file=sys.stderr)
        return 3
    return 0
