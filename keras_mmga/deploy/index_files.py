"""The files of a saved gallery index: their names, and reading them back with errors that name the file.

A saved index is `PREFIX.index.npz` (pids, camids; the features for the
NumPy backend) + `PREFIX.index.json` (format, search settings, paths, the
model) + `PREFIX.index.faiss` for the FAISS backend.
"""

import os
import zipfile

import numpy as np

from keras_mmga.model_card import read_json

# A saved gallery index is `PREFIX.index.npz` + `PREFIX.index.json` (+
# `PREFIX.index.faiss` for the FAISS backend): not `PREFIX.json`, which is the
# model card's name when PREFIX is the model's.
INDEX_SUFFIX = ".index"
INDEX_FORMAT = "keras-mmga gallery index"


def index_files(prefix):
    """`(PREFIX.index.npz, PREFIX.index.json, PREFIX.index.faiss)`: a saved index's files."""
    base = os.fspath(prefix) + INDEX_SUFFIX
    return base + ".npz", base + ".json", base + ".faiss"


def read_index_arrays(npz_path, need_features=True):
    """features (None when not needed), pids, camids of a saved index, or a `ValueError` naming the file."""
    try:
        with np.load(npz_path) as z:
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise ValueError("a single array, not an .npz archive")
            missing = ({"features"} if need_features else set()) | {"pids", "camids"}
            missing -= set(z.files)
            if missing:
                raise ValueError(f"no {sorted(missing)} array(s)")
            return (z["features"] if need_features else None), z["pids"], z["camids"]
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as err:
        raise ValueError(f"{npz_path!r} is not a keras-mmga gallery index (features, pids, camids): {err}") from None


def read_index_meta(json_path):
    """`(paths, search, meta)` of a saved index's JSON, or a `ValueError` naming the file and what is wrong."""
    meta = read_json(json_path, "a keras-mmga gallery index")
    if not isinstance(meta, dict) or meta.get("format") != INDEX_FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ValueError(
            f'{json_path!r} is not a keras-mmga gallery index (expected "format": {INDEX_FORMAT!r}, got {found!r}).'
        )
    paths = meta.get("paths")
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise ValueError(f'{json_path!r}: expected "paths", a list of image paths.')
    search = meta.get("search", {"backend": "numpy"})
    if not isinstance(search, dict) or search.get("backend") not in ("numpy", "faiss"):
        raise ValueError(f"{json_path!r}: expected \"search\" with \"backend\" 'numpy' or 'faiss', got {search!r}.")
    return paths, search, {k: v for k, v in meta.items() if k not in ("format", "paths", "search")}
