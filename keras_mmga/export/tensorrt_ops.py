"""What the TensorRT ONNX parser accepts, to check exported graphs against without a GPU.

Source: onnx/onnx-tensorrt, `docs/operators.md`, "Supported ONNX Operators /
Operator Support Matrix" for TensorRT 8.5 (repository commit 6d0ab7be), which
states "TensorRT 8.5 supports operators up to Opset 17". `SUPPORTED` holds the
operators marked "Y" there, `UNSUPPORTED` those marked "N"; `check` also
applies the restrictions of that table that can affect this package's graphs.
Later TensorRT releases support a superset, so a graph that passes here parses
with TensorRT ≥ 8.5.

Example:
```python
import onnx
from keras_mmga.export import tensorrt_ops
tensorrt_ops.check(onnx.load("exported/mmga.onnx"))
```
"""

MAX_OPSET = 17

SUPPORTED = frozenset(
    """
    Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast Ceil Celu
    Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DepthToSpace DequantizeLinear Div
    Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather GatherElements GatherND Gemm
    GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample GRU HardSigmoid HardSwish
    Identity If ImageScaler InstanceNormalization IsNaN LeakyRelu Less LessOrEqual Log LogSoftmax Loop LRN LSTM
    LpNormalization LpPool MatMul Max MaxPool Mean MeanVarianceNormalization Min Mod Mul Neg NonMaxSuppression
    NonZero Not OneHot Or Pad ParametricSoftplus Pow PRelu QuantizeLinear RandomNormal RandomNormalLike
    RandomUniform RandomUniformLike Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax
    ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence RNN RoiAlign
    Round ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice
    Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK
    Transpose Trilu Unsqueeze Upsample Where Xor
    """.split()
)

UNSUPPORTED = frozenset(
    """
    Bernoulli BitShift BlackmanWindow Compress ConcatFromSequence ConvInteger DFT Det DynamicQuantizeLinear
    HammingWindow HannWindow Hardmax IsInf LayerNormalization MatMulInteger MaxRoiPool MaxUnpool MelWeightMatrix
    Multinomial NegativeLogLikelihoodLoss Optional OptionalGetElement OptionalHasElement QLinearConv
    QLinearMatMul STFT SequenceAt SequenceConstruct SequenceEmpty SequenceErase SequenceInsert SequenceLength
    SequenceMap SoftmaxCrossEntropyLoss SplitToSequence StringNormalizer TfIdfVectorizer Unique
    """.split()
)

# Restrictions from the table's last column, as (input index that must be a
# constant, why). Checked by `check`.
CONSTANT_INPUTS = {
    "Conv": (1, "weights W must be an initializer"),
    "ConvTranspose": (1, "weights W must be an initializer"),
    "Slice": (3, "axes must be an initializer"),
    "Squeeze": (1, "axes must be an initializer"),
    "Unsqueeze": (1, "axes must be a constant tensor"),
    "TopK": (1, "K must be an initializer"),
    "CumSum": (1, "axis must be an initializer"),
}
# 2D or 3D pooling only.
POOLING = ("AveragePool", "MaxPool")

# ONNX tensor element types TensorRT computes in (INT64 is cast down to INT32
# by the parser, so it is accepted for shapes and indices). DOUBLE has only
# "limited" support and BFLOAT16 none in 8.5: a float64 or bfloat16 export
# would not build as written.
SUPPORTED_DTYPES = frozenset(["FLOAT", "FLOAT16", "INT8", "INT32", "INT64", "BOOL"])


def unsupported_ops(onnx_model):
    """Sorted operator types of `onnx_model` that the TensorRT 8.5 parser does not list as supported."""
    return sorted({node.op_type for node in onnx_model.graph.node} - SUPPORTED)


def check(onnx_model):
    """Every reason the TensorRT parser would reject `onnx_model`, as strings (empty when it is ready).

    Checks the operators, the opset, the table's restrictions that can be
    checked statically (constant weights / axes, 2D or 3D pooling,
    `ReverseSequence` needs static shapes) and the tensor data types.

    Example:
    ```python
    check(onnx.load("exported/mmga.onnx"))
    ```
    """
    from onnx import TensorProto

    graph = onnx_model.graph
    problems = [f"operator {op} is not supported" for op in unsupported_ops(onnx_model)]
    opset = max((o.version for o in onnx_model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset > MAX_OPSET:
        problems.append(f"opset {opset} is above {MAX_OPSET} (TensorRT 8.5's parser)")
    constants = {init.name for init in graph.initializer}
    constants |= {out for node in graph.node if node.op_type == "Constant" for out in node.output}
    for node in graph.node:
        rule = CONSTANT_INPUTS.get(node.op_type)
        if rule and len(node.input) > rule[0] and node.input[rule[0]] and node.input[rule[0]] not in constants:
            problems.append(f"{node.op_type} {node.name!r}: {rule[1]}")
        if node.op_type in POOLING:
            kernel = next((list(a.ints) for a in node.attribute if a.name == "kernel_shape"), [])
            if len(kernel) not in (2, 3):
                problems.append(f"{node.op_type} {node.name!r}: only 2D or 3D pooling")
        if node.op_type == "ReverseSequence":
            problems.append(f"ReverseSequence {node.name!r}: dynamic input shapes (the batch) are unsupported")
    types = [(init.name, init.data_type) for init in graph.initializer]
    types += [(v.name, v.type.tensor_type.elem_type) for v in list(graph.input) + list(graph.output)]
    for name, dtype in types:
        if TensorProto.DataType.Name(dtype) not in SUPPORTED_DTYPES:
            problems.append(f"tensor {name!r} has type {TensorProto.DataType.Name(dtype)}")
    return problems
