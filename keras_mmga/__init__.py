"""keras-mmga: Multi-Scale Body-Part Mask Guided Attention for person re-ID, in Keras 3.

`import keras_mmga` does not load Keras (nor TensorFlow): `keras_mmga.deploy`
runs on ONNX Runtime, OpenCV and NumPy alone, and `keras-mmga --help` answers
at once. The top-level names load on first use (PEP 562), and the package's
classes are registered as soon as Keras itself is imported, so that
`keras.models.load_model("model.keras")` works after `import keras_mmga`:
the import rule, written once in `keras_mmga.lazy`'s docstring.
"""

import importlib
import importlib.abc
import importlib.util
import sys

from keras_mmga.lazy import lazy_exports

__version__ = "0.1.0"

# name -> module that defines it
_LAZY = {
    "MMGA": "keras_mmga.models",
    "MMGABackbone": "keras_mmga.models",
    "VARIANTS": "keras_mmga.models",
    "layers": "keras_mmga.layers",
    "losses": "keras_mmga.losses",
    "optimizers": "keras_mmga.optimizers",
    # Subpackages, so that `import keras_mmga; keras_mmga.models.load_model(...)` works as written.
    "data": "keras_mmga.data",
    "deploy": "keras_mmga.deploy",
    "engine": "keras_mmga.engine",
    "evaluation": "keras_mmga.evaluation",
    "export": "keras_mmga.export",
    "masks": "keras_mmga.masks",
    "models": "keras_mmga.models",
}

__all__ = ["MMGA", "MMGABackbone", "VARIANTS", "layers", "losses", "optimizers", "__version__"]


__getattr__, __dir__ = lazy_exports("keras_mmga", _LAZY, globals())


def _register_serializables():
    importlib.import_module("keras_mmga.models")


class _RegisterWhenKerasLoads(importlib.abc.MetaPathFinder):
    """Runs `_register_serializables` right after the `keras` package has executed."""

    def find_spec(self, name, path=None, target=None):
        if name != "keras":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec("keras")
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_keras = spec.loader.exec_module

        def exec_then_register(module):
            exec_keras(module)
            _register_serializables()

        spec.loader.exec_module = exec_then_register
        return spec


if "keras" in sys.modules:
    _register_serializables()
elif importlib.util.find_spec("keras") is not None:
    sys.meta_path.insert(0, _RegisterWhenKerasLoads())
