"""Test session setup.

TensorFlow fixes its device list at first use, so the logical CPU devices that the
distribution tests need (2 and 4 replicas) are configured here, before any test runs.
Ordinary tests still place their ops on the first CPU device.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

NUM_LOGICAL_CPUS = 4

# Listing logical devices would initialise them, so configure unconditionally;
# the call fails only if something initialised TensorFlow's devices earlier.
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0],
    [tf.config.LogicalDeviceConfiguration()] * NUM_LOGICAL_CPUS,
)


def _release_memory():
    import ctypes
    import gc

    import keras

    keras.backend.clear_session()
    gc.collect()
    # TensorFlow and tf2onnx allocate and free gigabytes in many threads; glibc
    # keeps freed blocks in per-thread arenas, so without a trim the test
    # process grows by a few GB per module until the kernel kills it.
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


@pytest.fixture(autouse=True, scope="module")
def release_memory_after_each_module():
    yield
    _release_memory()
