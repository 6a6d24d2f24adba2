"""Test session setup.

TensorFlow fixes its device list at first use, so the logical CPU devices that the
in-process distribution tests need (2 replicas) are configured here, before any test runs.
Ordinary tests still place their ops on the first CPU device.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

NUM_LOGICAL_CPUS = 2

# Listing logical devices would initialise them, so configure unconditionally;
# the call fails only if something initialised TensorFlow's devices earlier.
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration()] * NUM_LOGICAL_CPUS,
)


def _resident_gb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30


_released_at_gb = 0.0  # resident size after the last release


@pytest.fixture(autouse=True, scope="module")
def release_memory_after_each_module():
    # Without this the session outgrows a 24 GB machine (models, traced
    # functions and conversions of ~200 tests in one process). Only after a
    # module that grew the process: with a large heap the collection itself
    # takes seconds, which light modules need not pay.
    global _released_at_gb
    yield
    if _resident_gb() - _released_at_gb < 1.0:
        return
    import keras

    from keras_mmga.memory import release_freed_memory

    keras.backend.clear_session()
    release_freed_memory()
    _released_at_gb = _resident_gb()
