"""Flags that several subcommands share, declared once so they are spelled and checked the same."""

import argparse


def add_model(parser, help_text):
    """`--model PATH` (required); a path given where the model used to be positional is refused by `model_from`."""
    # No default shown in --help: the flag is required (checked by `model_from`, which also
    # recognises the old positional spelling).
    parser.add_argument("--model", help=help_text + " (required)", metavar="PATH", default=argparse.SUPPRESS)
    parser.add_argument("_positional_model", nargs="?", help=argparse.SUPPRESS)


def model_from(args, command):
    """The `--model` path; `ValueError` naming the flag when it is missing or given positionally."""
    from keras_mmga.cli import UsageError

    args.model = getattr(args, "model", None)
    if args._positional_model is not None:
        if args.model is None:
            raise UsageError(f"the model is given with --model: keras-mmga {command} --model "
                             f"{args._positional_model} ...")
        raise UsageError(f"unexpected argument {args._positional_model!r} (the model is --model {args.model})")
    if args.model is None:
        raise UsageError(f"--model PATH is required (see keras-mmga {command} --help)")
    return args.model


def check_positive(args, *names):
    """`UsageError` naming the first flag among `names` (argparse dests) whose value is below 1."""
    from keras_mmga.cli import UsageError

    for name in names:
        value = getattr(args, name)
        if value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be ≥ 1, got {value}")
