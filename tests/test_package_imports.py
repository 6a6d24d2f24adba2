"""What `import keras_mmga` loads: nothing heavy, yet saved models load after it."""

import os
import subprocess
import sys

import pytest


def _run(code):
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={"TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_package_import_loads_neither_keras_nor_tensorflow():
    out = _run(
        "import sys, keras_mmga, keras_mmga.progress, keras_mmga.cli\n"
        "print(sorted(m for m in ('keras', 'tensorflow', 'jax') if m in sys.modules))"
    )
    assert out.strip() == "[]"


@pytest.mark.slow
def test_saved_model_loads_after_import_keras_mmga_in_either_order(tmp_path):
    path = tmp_path / "m.keras"
    _run(
        "import keras_mmga\n"
        "m = keras_mmga.MMGA(num_classes=3, variant='baseline', input_shape=(32, 16, 3), backbone_weights=None)\n"
        f"m.save({str(path)!r})"
    )
    for imports in ("import keras_mmga\nimport keras", "import keras\nimport keras_mmga"):
        out = _run(f"{imports}\nm = keras.models.load_model({str(path)!r})\nprint(type(m).__name__, m.num_classes)")
        assert out.split() == ["MMGA", "3"]


def test_top_level_help_lists_the_pipeline_without_loading_keras():
    out = _run(
        "import sys\nfrom keras_mmga.cli import build_parser\n"
        "build_parser().print_help()\nprint('keras' in sys.modules)"
    )
    for command in ("synthetic", "masks", "train", "evaluate", "export", "search", "demo"):
        assert command in out
    assert out.strip().endswith("False")


def test_docstring_examples_are_plain_code_not_unrun_doctests():
    """Examples are fenced code: a `>>>` block would claim outputs that no test runs."""
    import pathlib

    root = pathlib.Path(__file__).resolve().parent.parent / "keras_mmga"
    offenders = [
        f"{p.relative_to(root)}:{i + 1}"
        for p in sorted(root.rglob("*.py"))
        for i, line in enumerate(p.read_text().splitlines())
        if line.lstrip().startswith(">>>")
    ]
    assert offenders == []


@pytest.mark.parametrize("module", ["keras_mmga.layers", "keras_mmga.optimizers"])
def test_a_subpackage_imported_first_still_registers_the_classes(module):
    """`import keras_mmga`, then a subpackage that loads Keras.

    Registering MMGA must not hit the half-imported subpackage.
    """
    code = (
        f"import keras_mmga, importlib; importlib.import_module({module!r}); import keras; "
        "assert keras.saving.get_registered_object('keras_mmga>MMGA') is not None"
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


# The pipeline, bottom to top: a module imports (at its top or inside a
# function) only from its own layer or below. deploy stands apart: it may use
# the shared base only, so that it installs and runs without TensorFlow.
LAYERS = [
    {"lazy", "progress", "image_io", "run_lock", "settings", "preprocessing", "model_card", "memory", "backends"},
    {"data", "masks"},
    {"layers", "losses", "optimizers"},
    {"models"},
    {"visualize", "evaluation"},
    {"engine"},
    {"export"},
    {"deploy"},
    # What runs every stage: the command, its module entry point and the demo.
    {"cli", "__main__", "engine.demo", "<package>"},
]


def _unit(module):
    parts = module.split(".")[1:]
    if not parts:
        return "<package>"
    return "engine.demo" if parts[:2] == ["engine", "demo"] else parts[0]


def _imports(path):
    import ast

    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "keras_mmga":
            if node.module == "keras_mmga":
                yield from (f"keras_mmga.{a.name}" for a in node.names)
            else:
                yield node.module
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.startswith("keras_mmga."))


def test_imports_point_down_the_pipeline():
    import pathlib

    root = pathlib.Path(__file__).resolve().parent.parent / "keras_mmga"
    layer_of = {unit: i for i, units in enumerate(LAYERS) for unit in units}
    up, unknown = [], set()
    for path in sorted(root.rglob("*.py")):
        module = ".".join(("keras_mmga",) + path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
        source = _unit(module)
        unknown |= {source} - set(layer_of)
        for target in map(_unit, _imports(path)):
            unknown |= {target} - set(layer_of)
            if target == source or target not in layer_of or source not in layer_of:
                continue
            if layer_of[target] > layer_of[source] or (source == "deploy" and layer_of[target] > 0):
                up.append(f"{module} -> {target}")
    assert unknown == set(), f"modules not placed in LAYERS: {sorted(unknown)}"
    assert up == []
