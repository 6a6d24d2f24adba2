"""The `keras-mmga` command: one subcommand per stage of the pipeline.

Each subcommand is a module `keras_mmga.cli.<module>` with two functions:
`add_arguments(parser)` (argparse only: the module imports nothing heavy at
import time, so `--help` answers at once) and `run(args) -> int` (the exit
status; imports the package's API, where the logic lives). `scripts/*.py` are
thin wrappers over the same modules.

Example:
    keras-mmga train --data Market-1501 --masks Market-1501-masks --output runs/mmga
    keras-mmga evaluate runs/mmga/model.keras --data Market-1501
"""

import argparse
import importlib
import os
import sys

# subcommand -> (module, one-line help). Order is the pipeline's.
COMMANDS = {
    "synthetic": ("keras_mmga.cli.synthetic", "write the embedded synthetic dataset (images + LIP masks)"),
    "masks": ("keras_mmga.cli.masks", "make body-part masks for a folder of person images"),
    "train": ("keras_mmga.cli.train", "train an MMGA variant (resumable)"),
    "evaluate": ("keras_mmga.cli.evaluate", "rank-1/5/10, mAP and mINP of a trained model"),
    "export": ("keras_mmga.cli.export", "export a trained model to ONNX with a parity check"),
    "search": ("keras_mmga.cli.search", "search a gallery with an exported model"),
    "demo": ("keras_mmga.cli.demo", "train, evaluate and export on the embedded synthetic data"),
    "ablation": ("keras_mmga.cli.ablation", "train and evaluate the five variants of the paper's Table 1"),
}


def _quiet_backends():
    # Before anything imports TensorFlow: no C++ log noise in front of output.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def build_parser(command=None):
    """The top-level parser; with `command`, only that subcommand is loaded."""
    parser = argparse.ArgumentParser(
        prog="keras-mmga",
        description="MMGA person re-identification: data, masks, training, evaluation, export and search.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        sp = sub.add_parser(
            name, help=help_text, description=help_text, formatter_class=argparse.ArgumentDefaultsHelpFormatter
        )
        if name == command:
            module = importlib.import_module(module_name)
            module.add_arguments(sp)
            sp.set_defaults(_run=module.run)
    return parser


def main(argv=None):
    """Entry point of `keras-mmga`; returns the exit status."""
    _quiet_backends()
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return int(args._run(args) or 0)


def run_script(command, argv=None):
    """`scripts/<name>.py`: the same subcommand, named after the script in usage lines."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return main([command, *argv])


if __name__ == "__main__":
    sys.exit(main())
