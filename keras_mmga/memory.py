"""Returning freed memory to the operating system in long-running processes."""

import ctypes
import gc


def release_freed_memory():
    """Collects reference cycles and hands glibc's freed heap back to the OS.

    TensorFlow and tf2onnx allocate and free gigabytes from many threads (a
    ResNet50 ONNX conversion peaks at ~4 GB for a ~120 MB model, much of it in
    reference cycles); glibc keeps freed blocks in per-thread arenas, so a
    process that exports or builds several models grows by gigabytes unless
    the cycles are collected and the arenas trimmed. A no-op trim where the C
    library is not glibc.

    Example:
    ```python
    release_freed_memory()   # after an export, between the models of a sweep
    ```
    """
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass
