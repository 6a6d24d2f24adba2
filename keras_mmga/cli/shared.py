"""Flags that several subcommands share, declared once so they are spelled and checked the same."""

import argparse


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Every command's `--help`: the description as written, and each default worth showing.

    No "(default: None)" for a flag without a value nor "(default: False)" for a switch, and none where
    the help text already states its default.
    """

    def _get_help_string(self, action):
        if action.default is None or action.default is False or "(default:" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def add_required(parser, flag, metavar, help_text):
    """`flag METAVAR` (required), where the value used to be positional: `required_from` refuses that spelling."""
    # No default shown in --help: the flag is required (checked by `required_from`, which also
    # recognises the old positional spelling).
    parser.add_argument(flag, help=help_text + " (required)", metavar=metavar, default=argparse.SUPPRESS)
    parser.add_argument(_positional(flag), nargs="?", help=argparse.SUPPRESS)


def required_from(args, flag, metavar, command, what):
    """The value of `flag` (added by `add_required`); `UsageError` naming it when missing or given positionally."""
    from keras_mmga.cli import UsageError

    dest = flag.lstrip("-").replace("-", "_")
    value = getattr(args, dest, None)
    setattr(args, dest, value)
    positional = getattr(args, _positional(flag))
    if positional is not None:
        if value is None:
            raise UsageError(f"the {what} is given with {flag}: keras-mmga {command} {flag} {positional} ...")
        raise UsageError(f"unexpected argument {positional!r} (the {what} is {flag} {value})")
    if value is None:
        raise UsageError(f"{flag} {metavar} is required (see keras-mmga {command} --help)")
    return value


def _positional(flag):
    return "_positional_" + flag.lstrip("-").replace("-", "_")


def add_model(parser, help_text):
    """`--model PATH` (required; evaluate, export)."""
    add_required(parser, "--model", "PATH", help_text)


def model_from(args, command):
    """The `--model` path; `UsageError` naming the flag when it is missing or given positionally."""
    return required_from(args, "--model", "PATH", command, "model")


def check_positive(args, *names):
    """`UsageError` naming the first flag among `names` (argparse dests) whose value is below 1."""
    from keras_mmga.cli import UsageError

    for name in names:
        value = getattr(args, name)
        if value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be ≥ 1, got {value}")
