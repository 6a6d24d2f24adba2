"""ONNX operators the TensorRT ONNX parser supports, to check exported graphs against.

Source: onnx/onnx-tensorrt, docs/operators.md ("Operator Support Matrix",
TensorRT 8.4, operators marked "Y"). Later TensorRT releases support a superset.
Restrictions that matter for this package's graphs are in `RESTRICTIONS`.
"""

SUPPORTED = frozenset(
    """
    Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization
    Cast Ceil Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum
    DepthToSpace DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten
    Floor Gather GatherElements GatherND Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool
    Greater GreaterOrEqual GRU HardSigmoid Identity If ImageScaler InstanceNormalization IsNaN
    LeakyRelu Less LessOrEqual Log LogSoftmax Loop LRN LSTM LpNormalization LpPool MatMul Max
    MaxPool Mean Min Mul Neg NonMaxSuppression Not Or Pad ParametricSoftplus Pow PRelu
    QuantizeLinear RandomUniform RandomUniformLike Range ReduceL1 ReduceL2 ReduceLogSum
    ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu
    Reshape Resize ReverseSequence RNN Round ScaledTanh Scan Scatter ScatterElements ScatterND
    Selu Shape Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split
    Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK Transpose Unsqueeze Upsample Where Xor
    """.split()
)

RESTRICTIONS = {
    "ReverseSequence": "dynamic input shapes are unsupported (the batch axis is dynamic here)",
    "Conv": "weights must be an initializer",
    "Slice": "axes must be an initializer",
    "Squeeze": "axes must be an initializer",
    "Unsqueeze": "axes must be a constant tensor",
}


def unsupported_ops(onnx_model):
    """Operator types of `onnx_model` that TensorRT cannot parse (with dynamic batch)."""
    ops = {node.op_type for node in onnx_model.graph.node}
    return sorted((ops - SUPPORTED) | (ops & {"ReverseSequence"}))
