"""release_freed_memory: reference cycles are collected (the part observable from Python)."""

import gc
import weakref

from keras_mmga.memory import release_freed_memory


class _Node:
    pass


def test_collects_reference_cycles():
    gc.disable()  # only the function under test may collect
    try:
        a, b = _Node(), _Node()
        a.other, b.other = b, a
        ref = weakref.ref(a)
        del a, b
        assert ref() is not None  # a cycle: reference counting alone keeps it
        release_freed_memory()
        assert ref() is None
    finally:
        gc.enable()
