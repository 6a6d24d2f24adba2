"""Lazy package exports (PEP 562): names import their module on first use. The package's import rule.

The rule, written once here:

1. `import keras_mmga` and a package's `__init__` import no Keras, TensorFlow
   or OpenCV: the package `__init__` files list their public names with
   `lazy_exports`, each name importing its module on first use. So
   `keras-mmga --help` answers without TensorFlow, and `keras_mmga.deploy`
   runs on ONNX Runtime alone.
2. So that `keras.models.load_model("model.keras")` finds the package's
   classes after a plain `import keras_mmga` (the usual Keras rule), the
   package registers them (imports `keras_mmga.models`) as soon as Keras is
   imported (`keras_mmga/__init__.py`).
3. Because of 2, `keras_mmga.models` may run while a subpackage that imported
   Keras is itself half-imported: modules of `keras_mmga.models` import
   `keras_mmga.layers` / `keras_mmga.optimizers` as modules
   (`from keras_mmga import optimizers`), never their names.
"""

import importlib


def lazy_exports(package, names, namespace):
    """`(__getattr__, __dir__)` for a package whose `names` map a name to the module defining it.

    A name that is the module's own last component (`"masks"` ->
    `"keras_mmga.data.masks"`) is the module itself; any other is an attribute
    of it. The value is cached in `namespace` (the package's `globals()`).
    """

    def __getattr__(name):
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(names[name])
        value = module if module.__name__.endswith("." + name) else getattr(module, name)
        namespace[name] = value
        return value

    def __dir__():
        return sorted(set(namespace) | set(names))

    return __getattr__, __dir__
