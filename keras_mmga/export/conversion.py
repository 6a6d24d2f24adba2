"""tf2onnx conversion of a traced function, with the deployment contract's tensor names.

Example:
```python
from keras_mmga.export import convert, inference_function
proto = convert(inference_function(model))
[i.name for i in proto.graph.input], [o.name for o in proto.graph.output]
```
"""

import contextlib
import os

from keras_mmga.export.inference import INPUT_NAME, OUTPUT_NAME
from keras_mmga.memory import release_freed_memory

# tf2onnx 1.17 tests opsets 14-18; the TensorRT 8.5 ONNX parser documents
# opsets up to 17 (`tensorrt_ops.MAX_OPSET`), so 17 is the default that both
# ONNX Runtime and TensorRT accept. 18 is allowed for newer runtimes.
DEFAULT_OPSET = 17
MIN_OPSET, MAX_OPSET = 13, 18


@contextlib.contextmanager
def _tf2onnx_raise_errors():
    # tf2onnx deep-copies the whole graph, weights included, before each of
    # its ~12 optimisers so that a failing one can be skipped; that is about a
    # third of the conversion time of a ResNet50. Any value of this variable
    # turns the copies off (an optimiser error then raises, see `convert`).
    key = "TF2ONNX_CATCH_ERRORS"
    old = os.environ.get(key)
    os.environ[key] = "FALSE"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


def convert(function, opset=DEFAULT_OPSET):
    """ONNX `ModelProto` of a `tf.function` with an input signature.

    A single input is named `images` and a single output `features`; several
    outputs keep the names of the function's output dict.

    Example:
    ```python
    proto = convert(inference_function(model))
    ```
    """
    import tf2onnx

    kwargs = dict(input_signature=function.input_signature, opset=int(opset))
    try:
        try:
            with _tf2onnx_raise_errors():
                proto, _ = tf2onnx.convert.from_function(function, **kwargs)
        except Exception:  # an optimiser failed: convert again, letting tf2onnx skip it
            proto, _ = tf2onnx.convert.from_function(function, **kwargs)
    finally:
        release_freed_memory()  # the conversion's ~4 GB, before anything else runs
    return _name_io(proto)


def rename_tensor(graph, old, new):
    """Renames tensor `old` to `new` everywhere in `graph` (nodes, inputs, outputs, value_info)."""
    for node in graph.node:
        node.input[:] = [new if i == old else i for i in node.input]
        node.output[:] = [new if o == old else o for o in node.output]
    for value in list(graph.output) + list(graph.input) + list(graph.value_info):
        if value.name == old:
            value.name = new


def _name_io(proto):
    # tf2onnx names inputs after the TensorSpec and outputs after the dict
    # keys, in some versions with a ":0" suffix; the deployment contract is the
    # bare names.
    graph = proto.graph
    if len(graph.input) == 1 and graph.input[0].name != INPUT_NAME:
        rename_tensor(graph, graph.input[0].name, INPUT_NAME)
    if len(graph.output) == 1 and graph.output[0].name != OUTPUT_NAME:
        rename_tensor(graph, graph.output[0].name, OUTPUT_NAME)
    return proto
