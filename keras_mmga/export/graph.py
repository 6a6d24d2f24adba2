"""Checks of an ONNX graph's structure: dead nodes, dynamic dimensions, the L2-normalisation tail.

Example:
```python
from keras_mmga.export import dynamic_dims, unused_nodes
proto = onnx.load("exported/mmga.onnx")
unused_nodes(proto), dynamic_dims(proto)
```
"""

# Ops of the L2 normalisation at the end of the graph (kept in float32 by the
# float16 export and left unquantised by the int8 one).
_NORM_OPS = frozenset("Div Sqrt Max Clip ReduceSum ReduceSumSquare ReduceL2 LpNormalization Pow Reciprocal".split())


def unused_nodes(proto):
    """Nodes of `proto` whose outputs reach no graph output (dead code).

    An inference export must have none: a node that does not contribute to
    `features` could only be something training needs (a classifier, an
    attention-map output).

    Example:
    ```python
    unused_nodes(onnx.load("exported/mmga.onnx"))
    ```
    """
    graph = proto.graph
    producer = {out: i for i, node in enumerate(graph.node) for out in node.output}
    needed, stack = set(), [producer[o.name] for o in graph.output if o.name in producer]
    while stack:
        i = stack.pop()
        if i in needed:
            continue
        needed.add(i)
        stack.extend(producer[name] for name in graph.node[i].input if name in producer)
    return [node for i, node in enumerate(graph.node) if i not in needed]


def dynamic_dims(proto):
    """`{tensor: [axes]}` of inputs, outputs and inferred intermediates whose size is unknown, batch axis excepted.

    TensorRT builds one optimisation profile per input shape range; the exports
    keep everything but the batch static so a profile on `images` is all an
    engine needs.

    Example:
    ```python
    dynamic_dims(onnx.load("exported/mmga.onnx"))
    ```
    """
    import onnx

    inferred = onnx.shape_inference.infer_shapes(proto)
    found = {}
    graph = inferred.graph
    for value in list(graph.input) + list(graph.output) + list(graph.value_info):
        if not value.type.HasField("tensor_type") or not value.type.tensor_type.HasField("shape"):
            continue
        dims = value.type.tensor_type.shape.dim
        # Rank-0/1 tensors are shapes and scalars; axis 0 of rank ≥ 2 tensors is the batch.
        loose = [axis for axis, d in enumerate(dims) if axis > 0 and not d.HasField("dim_value")]
        if loose:
            found[value.name] = loose
    return found


def normalisation_tail(graph):
    """Indices of the nodes of the final L2 normalisation: the walk back from the outputs through `_NORM_OPS`.

    The float16 export keeps them float32: the sum of 2048 squares overflows
    float16 (max 65504) as soon as the components average above ~5.7, and
    its 1e-12 floor is below float16's smallest subnormal. The int8 export
    keeps them float32 too, so the features stay unit length.
    """
    producer = {out: i for i, node in enumerate(graph.node) for out in node.output}
    tail, stack = set(), [producer[o.name] for o in graph.output if o.name in producer]
    while stack:
        i = stack.pop()
        node = graph.node[i]
        squaring = node.op_type == "Mul" and len(node.input) == 2 and node.input[0] == node.input[1]
        if i in tail or not (node.op_type in _NORM_OPS or squaring):
            continue
        tail.add(i)
        stack.extend(producer[name] for name in node.input if name in producer)
    return tail
