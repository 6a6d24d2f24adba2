"""The `keras-mmga` command: one subcommand per stage of the pipeline.

Each subcommand is a module `keras_mmga.cli.<module>` with two functions:
`add_arguments(parser)` (argparse only: the module imports nothing heavy at
import time, so `--help` answers at once) and `run(args) -> int` (the exit
status; imports the package's API, where the logic lives). `scripts/*.py` are
thin wrappers over the same modules.

What every subcommand shares, here:

* `--quiet` (no progress, no summary: only the result) and `--verbose` (also
  TensorFlow's and CUDA's start-up lines, hidden otherwise);
* a failure the user can cause (a bad flag, path or file, a renamed flag) is
  one `error: ...` line on stderr and exit status 2; Ctrl-C is one line and
  exit status 130, the work done so far kept;
* flags renamed for one vocabulary across subcommands (`RENAMED`) are refused
  with the new spelling, not silently accepted.

Example:
    keras-mmga train --data Market-1501 --masks Market-1501-masks --output runs/mmga
    keras-mmga evaluate --model runs/mmga/best.keras --data Market-1501
"""

import argparse
import importlib
import os
import sys
import warnings

from keras_mmga.cli.shared import HelpFormatter

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

# (subcommand, old flag) -> what replaces it. One name per thing across the
# subcommands: the dataset root is --data, its file-name layout --dataset, the
# model --model, the result --output, Keras's progress --progress.
RENAMED = {
    ("export", "--eval-data"): "--data",
    ("export", "--eval-dataset"): "--dataset",
    ("ablation", "--layout"): "--dataset",
    ("search", "--efSearch"): "--ef-search",
    ("search", "--efConstruction"): "--ef-construction",
    ("demo", "--out"): "--output",
    # Not renamed but asked for by habit: the training batch is P x K.
    ("train", "--batch-size"): "-P / -K (the training batch is P x K images); the evaluation batch is "
    "--eval-batch-size",
}

# What a user's input can raise (OSError: paths, permissions, a download that cannot happen;
# ImportError: an optional package the chosen setting needs, e.g. faiss for `search --backend faiss`).
USER_ERRORS = (ValueError, OSError, ImportError)


class UsageError(Exception):
    """A command line that cannot work: reported as one `error:` line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """argparse, with its usage errors as one `error:` line naming `--help` (exit status 2)."""

    def error(self, message):
        raise UsageError(f"{message} (see {self.prog} --help)")


def _quiet_backends(verbose):
    # Before anything imports TensorFlow: C++ logging (oneDNN, CUDA, cuInit) only with --verbose.
    if not verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
        os.environ.setdefault("GRPC_VERBOSITY", "ERROR")


def add_verbosity(parser):
    group = parser.add_argument_group("output").add_mutually_exclusive_group()
    group.add_argument("-q", "--quiet", action="store_true", help="no progress and no summary: only the result")
    group.add_argument(
        "-v", "--verbose", action="store_true", help="also TensorFlow's / CUDA's start-up lines (hidden otherwise)"
    )


def build_parser(command=None):
    """The top-level parser; with `command`, only that subcommand is loaded."""
    parser = Parser(
        prog="keras-mmga",
        description="MMGA person re-identification: data, masks, training, evaluation, export and search.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name, (module_name, help_text) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text, formatter_class=HelpFormatter)
        if name == command:
            module = importlib.import_module(module_name)
            module.add_arguments(sp)
            add_verbosity(sp)
            sp.set_defaults(_run=module.run)
    return parser


def check_renamed(command, argv):
    """Raises `UsageError` for a flag of `RENAMED` (also as `--flag=value`) or `--verbose N`."""
    for i, token in enumerate(argv):
        flag = token.split("=", 1)[0]
        new = RENAMED.get((command, flag))
        if new is not None:
            raise UsageError(f"{flag} is now {new} (keras-mmga {command} --help lists the flags)")
        if flag == "--verbose" and ("=" in token or (i + 1 < len(argv) and argv[i + 1] in ("0", "1", "2"))):
            raise UsageError(
                "--verbose takes no value: it shows TensorFlow's start-up lines; Keras's progress "
                "is --progress 0/1/2 (--quiet: none)"
            )


def _one_line(err):
    text = str(err).strip() or type(err).__name__
    if isinstance(err, OSError) and err.filename and str(err.filename) not in text:
        text = f"{text}: {err.filename}"
    return " ".join(text.split())


_SHOWN = set()


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    # A warning is for the user, not a source line: "warning: ..." on one line, each text once
    # (settings are checked by the command and again by the API it calls). --verbose: Python's format.
    text = " ".join(str(message).split())
    if text not in _SHOWN:
        _SHOWN.add(text)
        print(f"warning: {text}", file=sys.stderr if file is None else file)


def main(argv=None, filter_stderr=None):
    """Entry point of `keras-mmga`; returns the exit status.

    Args:
        argv: the arguments after the program name (default `sys.argv[1:]`).
        filter_stderr: drop TensorFlow's C++ start-up lines from file
            descriptor 2 unless `--verbose` (default: only when `argv` is None,
            i.e. when this is the process's command line).
    """
    from_command_line = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    verbose = "--verbose" in argv or "-v" in argv
    _quiet_backends(verbose)
    shown = warnings.showwarning
    if not verbose:
        _SHOWN.clear()
        warnings.showwarning = _one_line_warning
    stderr_filter = None
    if (from_command_line if filter_stderr is None else filter_stderr) and not verbose:
        from keras_mmga.cli.stderr_filter import StartupNoiseFilter

        stderr_filter = StartupNoiseFilter.install()
    try:
        if command in COMMANDS:
            check_renamed(command, argv)
        parser = build_parser(command if command in COMMANDS else None)
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        return int(args._run(args) or 0)
    except KeyboardInterrupt as err:
        # What the command kept is its own business (a resumable run folder, a masks report).
        done = str(err) or "work done so far is kept; run the same command again to continue"
        print(f"error: interrupted ({done})", file=sys.stderr)
        return 130
    except (UsageError, *USER_ERRORS) as err:
        if verbose and not isinstance(err, UsageError):
            raise  # --verbose: the traceback too
        # Bad flags, paths, files, settings or data: the message names them.
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return 2
    finally:
        warnings.showwarning = shown
        if stderr_filter is not None:
            stderr_filter.remove()


def run_script(command, argv=None):
    """`scripts/<name>.py`: the same subcommand, named after the script in usage lines."""
    filter_stderr = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    return main([command, *argv], filter_stderr=filter_stderr)


if __name__ == "__main__":
    sys.exit(main())
