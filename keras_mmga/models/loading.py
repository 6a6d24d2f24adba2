"""Loading a saved model: a `.keras` archive checked before Keras reads it.

Here rather than in `keras_mmga.engine` so that the export (and anything else
below the engine) can load a checkpoint without importing the training and
evaluation machinery.
"""

import os
import zipfile

import keras


def load_model(model_or_path):
    """An `MMGA` instance, or the one saved at a `.keras` path.

    Args:
        model_or_path: a Keras model, or the path of a `.keras` file written by
            `train` (`latest.keras` / `best.keras`).

    Raises:
        FileNotFoundError: no file at the path.
        ValueError: the file is not a `.keras` archive (another suffix; not a
            zip file: truncated, or another format such as HDF5; a zip
            without the archive's `config.json`), or Keras cannot rebuild
            the model from it; the message names the file and the problem.
            (Keras itself reports a damaged archive as "File not found".)

    Example:
    ```python
    model = load_model("runs/market_mmga/best.keras")
    ```
    """
    if isinstance(model_or_path, (str, os.PathLike)):
        path = os.fspath(model_or_path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"Model file not found: {path!r}.")
        if not path.endswith(".keras"):
            raise ValueError(f"Expected a .keras model file (as train() writes), got {path!r}.")
        check_keras_archive(path)
        import keras_mmga  # noqa: F401  (registers the custom objects)

        try:
            return keras.models.load_model(path)
        except (ValueError, TypeError, KeyError, OSError, zipfile.BadZipFile) as err:
            raise ValueError(f"Cannot load the Keras archive {path!r}: {type(err).__name__}: {err}") from err
    if not callable(model_or_path):
        raise TypeError(f"Expected a Keras model or a .keras path, got {type(model_or_path).__name__}.")
    return model_or_path


def check_keras_archive(path):
    """Raises `ValueError` naming `path` and the problem unless it looks like a complete `.keras` archive.

    A `.keras` file is a zip archive holding `config.json` (the
    architecture), `metadata.json` and `model.weights.h5`; the zip's central
    directory sits at its end, so a truncated copy is not a zip file at all.
    """
    path = os.fspath(path)
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
    bad = f"{path!r} is not a valid Keras archive"
    if not zipfile.is_zipfile(path):
        if head.startswith(b"\x89HDF"):
            raise ValueError(
                f"{bad}: it is an HDF5 file (a legacy .h5 model or a weights file), not the zip "
                "archive a .keras file is; load it by its own format."
            )
        what = "an empty file" if size == 0 else f"{size} bytes that do not end in a zip directory"
        raise ValueError(
            f"{bad}: a .keras file is a zip archive and this is {what} (a truncated download or "
            "copy, or another format saved under a .keras name)."
        )
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            broken = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise ValueError(f"{bad}: the zip archive is damaged ({err}).") from err
    missing = [n for n in ("config.json", "model.weights.h5") if n not in names]
    if missing:
        raise ValueError(
            f"{bad}: the zip archive lacks {', '.join(missing)} (it holds {', '.join(sorted(names)[:5]) or 'nothing'})."
        )
    if broken is not None:
        raise ValueError(f"{bad}: {broken!r} in the archive fails its checksum (a damaged copy).")
