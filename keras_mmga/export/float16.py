"""float16 rewriting of a float32 ONNX graph that keeps the float32 interface and L2 normalisation.

Example:
```python
from keras_mmga.export import convert, inference_function, to_float16
half = to_float16(convert(inference_function(model)))
```
"""

import numpy as np

from keras_mmga.export.graph import normalisation_tail

# Ops whose float inputs and outputs simply follow the data type, so converting
# their float tensors to float16 is enough. Anything else makes `to_float16`
# refuse rather than write a graph that only fails in a runtime.
_FP16_OPS = frozenset(
    """Abs Add AveragePool BatchNormalization Cast Concat Constant Conv Div Erf Exp Expand Flatten Gather Gemm
    GlobalAveragePool GlobalMaxPool Identity LeakyRelu MatMul Max MaxPool Min Mul Neg Pad Pow ReduceMax ReduceMean
    ReduceSum ReduceSumSquare Relu Reshape Shape Sigmoid Slice Softmax Split Sqrt Squeeze Sub Tanh Tile Transpose
    Unsqueeze""".split()
)


def to_float16(proto):
    """A float16 version of a float32 graph with the same float32 interface.

    Weights and activations become float16; a `Cast` after the input keeps
    `images` float32, and the final L2 normalisation computes in float32 so
    `features` is float32 and unit-length (see `graph.normalisation_tail`). Written
    here because onnxconverter-common, which has the usual converter, is not a
    dependency.

    Args:
        proto: an `onnx.ModelProto` from `convert` (modified in place).

    Returns:
        `proto`.

    Example:
    ```python
    half = to_float16(convert(inference_function(model)))
    ```
    """
    import onnx
    from onnx import helper, numpy_helper

    graph = proto.graph
    tail = normalisation_tail(graph)
    body = [i for i in range(len(graph.node)) if i not in tail]
    unknown = sorted({graph.node[i].op_type for i in body} - _FP16_OPS)
    if unknown:
        raise NotImplementedError(f"float16 conversion does not handle operators {unknown}.")
    float32 = onnx.TensorProto.FLOAT

    # Initializers: float16 copies for the body, the float32 original for the tail.
    users = {}
    for i, node in enumerate(graph.node):
        for name in node.input:
            users.setdefault(name, set()).add(i)
    initializers = []
    for init in graph.initializer:
        used = users.get(init.name, set())
        if init.data_type != float32 or not (used - tail):
            initializers.append(init)
            continue
        half_name = init.name if not (used & tail) else init.name + "__fp16"
        initializers.append(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), half_name))
        if used & tail:
            initializers.append(init)
            for i in used - tail:
                graph.node[i].input[:] = [half_name if n == init.name else n for n in graph.node[i].input]
    del graph.initializer[:]
    graph.initializer.extend(initializers)

    for i in body:
        node = graph.node[i]
        for attr in node.attribute:
            if node.op_type == "Cast" and attr.name == "to" and attr.i == float32:
                attr.i = onnx.TensorProto.FLOAT16
            if attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == float32:
                attr.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(attr.t).astype(np.float16), attr.t.name))

    casts_in, casts_out = [], []
    # float32 input -> float16 for the body.
    for value in graph.input:
        if value.type.tensor_type.elem_type == float32:
            half = value.name + "__fp16"
            for i in body:
                graph.node[i].input[:] = [half if n == value.name else n for n in graph.node[i].input]
            casts_in.append(
                helper.make_node(
                    "Cast", [value.name], [half], to=onnx.TensorProto.FLOAT16, name=value.name + "_to_fp16"
                )
            )
    # Body tensors read by the tail (or that are graph outputs) -> float32.
    body_outputs = {out for i in body for out in graph.node[i].output}
    for i in sorted(tail):
        node = graph.node[i]
        node.input[:] = [n + "__fp32" if n in body_outputs else n for n in node.input]
    crossing = {n[: -len("__fp32")] for i in tail for n in graph.node[i].input if n.endswith("__fp32")}
    for value in graph.output:
        if value.name in body_outputs:  # no tail: cast the output itself
            half = value.name + "__fp16"
            for i in body:
                graph.node[i].output[:] = [half if n == value.name else n for n in graph.node[i].output]
                graph.node[i].input[:] = [half if n == value.name else n for n in graph.node[i].input]
            casts_out.append(helper.make_node("Cast", [half], [value.name], to=float32, name=value.name + "_to_fp32"))
    for name in sorted(crossing):
        casts_out.append(helper.make_node("Cast", [name], [name + "__fp32"], to=float32, name=name + "_to_fp32"))

    nodes = casts_in + [graph.node[i] for i in body] + casts_out + [graph.node[i] for i in sorted(tail)]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]  # stale float32 annotations; runtimes infer the types
    return proto
