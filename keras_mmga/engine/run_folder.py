"""A training run's folder: where its resume state lives, and whether a restart is the same run.

`train` writes everything to `config.output_dir` (see `keras_mmga.engine.trainer`);
`check_resume` decides the epoch a restart continues from and refuses a
restart whose settings would change the model's variables or the data stream.
"""

import dataclasses
import json
import os

from keras_mmga.engine.callbacks import ResumableBackup
from keras_mmga.settings import DEFAULT_PARTS

# Settings that a resumed run must share with the run it resumes: they fix the
# model's variables or the data stream. Everything else (learning rate,
# epochs, evaluation interval, ...) may change between restarts.
_RESUME_KEYS = (
    "dataset",
    "variant",
    "parts",
    "image_size",
    "num_identities",
    "num_instances",
    "epoch",
    "steps_per_epoch",
    "seed",
)


# What a saved config.json without a key meant: runs written before the epoch
# definition existed trained in image epochs, and before `parts` the default ones.
_RESUME_DEFAULTS = {"epoch": "images", "parts": None}


def backup_dir(output_dir, is_chief, worker_index):
    """The folder of this process's resume state.

    Each worker restores its own copy of the (identical) state; separate
    folders keep workers that share a file system from overwriting each other.
    """
    backup = os.path.join(os.fspath(output_dir), "backup")
    return backup if is_chief else os.path.join(backup, f"worker{worker_index}")


def check_resume(config, output_dir, num_classes, backup_dir):
    """The epoch a run restarts from (0 for a new run), after checking it is the same run.

    `backup_dir` must be the folder this process's `ResumableBackup` restores
    from: the epoch read here positions the data stream, so it has to be the
    epoch Keras restores (a non-chief worker without a shared disk has only
    its own `backup/worker<i>/`).
    """
    completed = ResumableBackup.completed_epochs(backup_dir)
    saved_path = os.path.join(output_dir, "config.json")
    if not completed or not os.path.isfile(saved_path):
        return completed
    with open(saved_path) as f:
        saved = json.load(f)
    saved = _resolved_parts(_RESUME_DEFAULTS | saved)
    current = _resolved_parts(dataclasses.asdict(config) | {"num_classes": num_classes})
    differ = [
        f"{key}: {saved.get(key)!r} → {current[key]!r}"
        for key in _RESUME_KEYS + ("num_classes",)
        if key in saved and _normal(saved[key]) != _normal(current[key])
    ]
    if differ:
        hint = ""
        if saved["epoch"] != current["epoch"]:
            hint = (
                f" Its epochs are {saved['epoch']!r} epochs, so its completed epochs, learning-rate "
                f"decay and data position mean something else in {current['epoch']!r} epochs: resume it "
                f"with epoch={saved['epoch']!r} (--epoch {saved['epoch']})."
            )
        raise ValueError(
            f"{output_dir!r} holds a run (at epoch {completed}) with different settings "
            f"({'; '.join(differ)}); it cannot be resumed with these.{hint} Use another output folder, "
            "or delete this one to start over."
        )
    return completed


def _resolved_parts(settings):
    """`settings` with the `parts` that `parts=None` means for its variant written out."""
    if settings.get("parts") is None and settings.get("variant") == "mmga":
        # None builds the default parts: a run saved with None and one naming them train the same model.
        return settings | {"parts": list(DEFAULT_PARTS)}
    return settings


def _normal(value):
    return list(value) if isinstance(value, (tuple, list)) else value


def remove_files(*paths):
    for path in paths:
        if os.path.exists(path):
            os.remove(path)
