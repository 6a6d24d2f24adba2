"""One process at a time per output folder: a lock file holding the owner's process id.

Two `keras-mmga masks` (or `train`) runs on the same output folder would both
do all the work and overwrite each other's files. A run creates
`<folder>/.keras-mmga.lock` (atomically, `O_EXCL`) with its pid and host name;
a second run refuses, naming that pid. A lock left by a process that no longer
exists on this host (killed, crashed) is taken over. Imports nothing heavy.

Example:
```python
with RunLock("runs/mmga", "train"):
    ...  # the folder is this process's until the block ends
```
"""

import errno
import json
import os
import socket
import time

LOCK_NAME = ".keras-mmga.lock"


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class RunLock:
    """The lock of `folder` (created if missing) for the length of a `with` block.

    Args:
        folder: the output folder.
        what: what the run is ("masks", "train"), written into the lock and named in errors.

    Raises (on entering):
        ValueError: another live process holds the lock; the message names its
            pid (the command line reports it as one `error:` line).
    """

    def __init__(self, folder, what="run"):
        self.folder = os.path.abspath(os.fspath(folder))
        self.path = os.path.join(self.folder, LOCK_NAME)
        self.what = what
        self._held = False
        self._created = False

    def _holder(self):
        try:
            with open(self.path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def acquire(self):
        self._created = not os.path.isdir(self.folder)
        os.makedirs(self.folder, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "what": self.what}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except OSError as err:
                if err.errno != errno.EEXIST:
                    raise
                holder = self._holder()
                if holder is None:
                    # Being written this instant, or garbage (then stale).
                    time.sleep(0.05)
                    holder = self._holder()
                    if holder is None:
                        self._remove_stale()
                        continue
                pid, host = int(holder.get("pid", -1)), holder.get("host")
                if holder.get("pid") == os.getpid() and host == me["host"]:
                    raise ValueError(f"{self.folder!r} is already locked by this process ({self.what}).") from None
                if host == me["host"] and not _alive(pid):
                    self._remove_stale()  # its owner is gone: take it over
                    continue
                where = "" if host == me["host"] else f" on host {host}"
                raise ValueError(
                    f"{self.folder!r} is in use by another keras-mmga {holder.get('what', 'run')} (pid {pid}{where}); "
                    f"wait for it to finish, or give another output folder (lock file {self.path!r}, delete it "
                    f"if that process is gone)."
                ) from None
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self._held = True
            return self
        raise ValueError(f"Cannot take the lock {self.path!r}.")

    def _remove_stale(self):
        try:
            os.remove(self.path)
        except FileNotFoundError:
            pass

    def release(self):
        if self._held:
            holder = self._holder()
            if holder is not None and holder.get("pid") == os.getpid():
                self._remove_stale()
            self._held = False
            if self._created:
                # A run that stopped before writing anything leaves no empty folder behind.
                try:
                    os.rmdir(self.folder)
                except OSError:
                    pass

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def check_output_folder(path, what="output folder"):
    """Raises before any work when `path` cannot become a folder: it, or a folder above it, is a file.

    Args:
        path: the folder (need not exist yet).
        what: how errors name it (e.g. "output_dir (--output)").
    """
    path = os.path.abspath(os.fspath(path))
    if os.path.exists(path) and not os.path.isdir(path):
        raise FileExistsError(f"{what} {path!r} is an existing file, not a folder: give a folder.")
    _check_parents(path, what)


def check_output_file(path, what="output file"):
    """Raises before any work when `path` cannot be written as a file: a folder, or below a file."""
    path = os.path.abspath(os.fspath(path))
    if os.path.isdir(path):
        raise IsADirectoryError(f"{what} {path!r} is a folder: give a file name.")
    _check_parents(os.path.dirname(path), what, path)


def _check_parents(folder, what, target=None):
    target = target or folder
    while folder and not os.path.exists(folder):
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    if folder and os.path.exists(folder) and not os.path.isdir(folder):
        raise NotADirectoryError(f"{what} {target!r} cannot be created: {folder!r} is a file, not a folder.")
    if folder and os.path.isdir(folder) and not os.access(folder, os.W_OK):
        raise PermissionError(f"{what} {target!r} cannot be created: {folder!r} is not writable.")
