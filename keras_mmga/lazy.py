"""Lazy package exports (PEP 562): names import their module on first use.

The package `__init__` files use it so that importing a package loads none of
its heavy modules (TensorFlow, Keras, OpenCV) until a name that needs them is used.
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
