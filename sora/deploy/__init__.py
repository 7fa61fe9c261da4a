"""Shipping a model: ONNX export (``export_onnx``), prediction and serving.

An export folder is a model folder plus its ONNX graphs and an ``"export"`` object in meta.json
(docs/deploy.md): everything that reads a model folder still reads it.
"""

from sora.deploy.export import export_onnx, is_export_dir, read_export
from sora.deploy.predictor import Predictor

__all__ = ["Predictor", "export_onnx", "is_export_dir", "read_export"]
