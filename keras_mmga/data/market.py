"""Readers for the Market-1501 / DukeMTMC-reID folder layout."""

import os

from keras_mmga.image_io import DUKE_PATTERN, IMAGE_SUFFIXES, MARKET_PATTERN

SPLIT_DIRS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}


class ReIDDataset:
    """A re-ID dataset: train / query / gallery lists of `(path, pid, camid)`.

    Training identities are relabelled `0..N-1` (the classifier's classes);
    query and gallery keep their original ids, as the evaluation protocol
    compares them. Camera ids are 0-based.

    Args:
        train, query, gallery: lists of `(path, pid, camid)`; train pids are
            relabelled here unless `relabel=False`.
        name: str, shown in the summary.
        relabel: bool.
        verbose: bool, print the summary table.

    Example:
    ```python
    ds = ReIDDataset([("a.jpg", 7, 0), ("b.jpg", 7, 1)], [], [])
    ds.train[0][1], ds.num_train_pids
    ```
    """

    def __init__(self, train, query, gallery, name="custom", relabel=True, verbose=False):
        self.name = name
        train = self._validate(train, "train")
        if relabel:
            mapping = {pid: i for i, pid in enumerate(sorted({pid for _, pid, _ in train}))}
            train = [(p, mapping[pid], cam) for p, pid, cam in train]
        self.train = train
        self.query = self._validate(query, "query")
        self.gallery = self._validate(gallery, "gallery")
        if verbose:
            print(self.summary())

    def _validate(self, samples, split):
        out = []
        for i, item in enumerate(samples):
            try:
                path, pid, cam = item
                if any(isinstance(v, bool) or (isinstance(v, float) and not v.is_integer()) for v in (pid, cam)):
                    raise ValueError("pid and camid must be integers")
                out.append((os.fspath(path), int(pid), int(cam)))
            except (TypeError, ValueError) as err:
                raise ValueError(
                    f"{self.name}: {split} sample {i} is {item!r}: expected (path, pid, camid) with integer "
                    "pid and camid."
                ) from err
        return out

    @staticmethod
    def _stats(samples):
        return len({pid for _, pid, _ in samples}), len(samples), len({cam for _, _, cam in samples})

    @property
    def num_train_pids(self):
        return self._stats(self.train)[0]

    @property
    def num_train_cams(self):
        return self._stats(self.train)[2]

    @property
    def num_train_imgs(self):
        return len(self.train)

    @property
    def num_query_pids(self):
        return self._stats(self.query)[0]

    @property
    def num_query_cams(self):
        return self._stats(self.query)[2]

    @property
    def num_gallery_pids(self):
        return self._stats(self.gallery)[0]

    @property
    def num_gallery_cams(self):
        return self._stats(self.gallery)[2]

    def summary(self):
        """torchreid-style table of identities, images and cameras per split."""
        rows = [
            ("train", *self._stats(self.train)),
            ("query", *self._stats(self.query)),
            ("gallery", *self._stats(self.gallery)),
        ]
        lines = [
            f"=> {self.name} loaded",
            "  ----------------------------------------",
            "  subset   | # ids | # images | # cameras",
            "  ----------------------------------------",
        ]
        lines += [f"  {n:<8} | {i:5d} | {m:8d} | {c:9d}" for n, i, m, c in rows]
        lines.append("  ----------------------------------------")
        return "\n".join(lines)


class _FolderDataset(ReIDDataset):
    """Shared reader; subclasses set the file-name pattern."""

    pattern = None
    name = None
    # Folders the official archives unpack to (and torchreid's dataset_dir),
    # looked for under `root` when `root` itself is not the dataset folder.
    subfolders = ()

    def __init__(self, root, verbose=False):
        root = os.fspath(root)
        if not os.path.isdir(root):
            raise FileNotFoundError(f"{self.name}: dataset root {root!r} does not exist.")
        root = self._find_layout(root)
        self.root = root
        missing = [d for d in SPLIT_DIRS.values() if not os.path.isdir(os.path.join(root, d))]
        if missing:
            raise FileNotFoundError(
                f"{self.name}: {root!r} is not in the Market-1501 layout: missing "
                f"{', '.join(missing)} (expected {', '.join(SPLIT_DIRS.values())})."
            )
        splits = {k: self._read(os.path.join(root, d)) for k, d in SPLIT_DIRS.items()}
        super().__init__(splits["train"], splits["query"], splits["gallery"], name=self.name, verbose=verbose)

    @classmethod
    def _find_layout(cls, root):
        if os.path.isdir(os.path.join(root, SPLIT_DIRS["train"])):
            return root
        for sub in cls.subfolders:
            candidate = os.path.join(root, sub)
            if os.path.isdir(os.path.join(candidate, SPLIT_DIRS["train"])):
                return candidate
        return root

    def _read(self, folder):
        samples = []
        for fname in sorted(os.listdir(folder)):
            if not fname.lower().endswith(IMAGE_SUFFIXES):
                continue
            pid, camid = self.parse_name(fname, folder)
            if pid == -1:
                continue  # junk boxes are not part of the protocol
            samples.append((os.path.join(folder, fname), pid, camid))
        if not samples:
            raise ValueError(f"{self.name}: no images found in {folder!r}.")
        return samples

    @classmethod
    def parse_name(cls, fname, folder=""):
        """`(pid, camid)` of a file name, camid 0-based."""
        match = cls.pattern.match(os.path.basename(fname))
        if match is None:
            raise ValueError(
                f"{cls.name}: cannot parse file name {os.path.join(folder, fname)!r}: expected {cls.expected}."
            )
        pid, cam = int(match.group(1)), int(match.group(2))
        if pid < -1 or cam < 1:
            raise ValueError(
                f"{cls.name}: {os.path.join(folder, fname)!r} has pid {pid} / camera {cam}: "
                "expected pid ≥ -1 and cameras numbered from 1."
            )
        return pid, cam - 1


class Market1501(_FolderDataset):
    """Market-1501: `{pid:04d}_c{cam}s{seq}_{frame:06d}_{n:02d}.jpg`.

    Junk boxes (pid -1) are dropped, distractors (pid 0) stay in the gallery.
    Training pids are relabelled 0..N-1; query and gallery keep the file's
    pid. Camera ids are 0-based (`c1` → 0), as in torchreid.

    Args:
        root: folder holding `bounding_box_train/`, `bounding_box_test/` and
            `query/`, or a folder containing `Market-1501-v15.09.15/` or
            `market1501/` (torchreid's layout) with them.
        verbose: print the summary table (`print(market.summary())` shows
            it later).

    Example:
    ```python
    market = Market1501("/data/Market-1501-v15.09.15")
    market.num_train_pids
    ```
    """

    name = "Market1501"
    subfolders = (
        "Market-1501-v15.09.15",
        "Market-1501",
        "market1501",
        os.path.join("market1501", "Market-1501-v15.09.15"),
    )
    pattern = MARKET_PATTERN
    expected = "'{pid:04d}_c{cam}s{seq}_{frame:06d}_{n:02d}.jpg'"


class DukeMTMCreID(_FolderDataset):
    """DukeMTMC-reID: `{pid:04d}_c{cam}_f{frame}.jpg`, same folder layout.

    Args:
        root: folder holding `bounding_box_train/`, `bounding_box_test/` and
            `query/`, or a folder containing `DukeMTMC-reID/` (also under
            `dukemtmc-reid/`, torchreid's layout) with them.
        verbose: print the summary table (`print(duke.summary())` shows it
            later).

    Example:
    ```python
    duke = DukeMTMCreID("/data/DukeMTMC-reID")
    duke.num_train_pids
    ```
    """

    name = "DukeMTMCreID"
    subfolders = ("DukeMTMC-reID", os.path.join("dukemtmc-reid", "DukeMTMC-reID"))
    pattern = DUKE_PATTERN
    expected = "'{pid:04d}_c{cam}_f{frame}.jpg'"


def load_dataset(root, name="market1501", verbose=False):
    """Reads a dataset by name: `"market1501"` or `"dukemtmcreid"`; `verbose` prints its summary table."""
    readers = {"market1501": Market1501, "dukemtmcreid": DukeMTMCreID}
    if not isinstance(name, str):
        raise ValueError(f"Unknown dataset {name!r}: expected one of {sorted(readers)}.")
    key = name.lower().replace("-", "").replace("_", "")
    if key not in readers:
        raise ValueError(f"Unknown dataset {name!r}: expected one of {sorted(readers)}.")
    return readers[key](root, verbose=verbose)
