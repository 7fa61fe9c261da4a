"""``--int8``: ONNX Runtime's dynamic quantization of an fp32 graph, after its pre-processing step.

``quant_pre_process`` optimises the graph and infers its shapes (so every MatMul's weight is found),
then ``quantize_dynamic`` stores weights as int8 and quantizes activations per call. Weights are
quantized per output channel: it measured closer to fp32 than per-tensor weights (max logit difference
0.0077 against 0.0115 on a small trained classifier, 0.034 against 0.084 on all-MiniLM-L6-v2; docs/deploy.md).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from onnxruntime.quantization import QuantType, quantize_dynamic
from onnxruntime.quantization.shape_inference import quant_pre_process

from sora.errors import SoraError, first_line

PER_CHANNEL = True


def quantize_graph(fp32: Path, out: Path, *, per_channel: bool = PER_CHANNEL) -> None:
    """Write the int8 version of graph ``fp32`` to ``out``."""
    with tempfile.TemporaryDirectory(prefix="sora-int8-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        # Symbolic shape inference is skipped: it fails on the exporter's graphs ("incomplete") and then
        # leaves its temporary files in the current folder; the exported graphs carry their shapes already,
        # and ONNX's own shape inference still runs.
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        try:
            quantize_dynamic(prepared, out, per_channel=per_channel, weight_type=QuantType.QInt8)
        except Exception as e:  # noqa: BLE001  onnxruntime raises plain errors on graphs it cannot quantize
            raise SoraError(f"{fp32.name}: onnxruntime could not quantize it ({first_line(e)})") from None
