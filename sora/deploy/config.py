"""A recipe's ``export:`` section: which of the run's models ``sora run`` exports, and how."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from sora.configio import StrictModel


class ExportConfig(StrictModel):
    format: Literal["onnx"] = Field("onnx", description="the export format")
    int8: bool = Field(False, description="quantize the graphs with ONNX Runtime's dynamic int8 quantization")
    model: Literal["trained", "pruned"] = Field(
        "trained",
        description="trained: OUT/model; pruned: the compression stage's pruned fp32 model (OUT/compressed/pruned)",
    )
