"""Deployment: ONNX export with batch norms folded, parity checks against PyTorch, and measured
latency of students and teachers on this machine (paper Sec. 8: inference time)."""

from .speed import RUNTIMES, Timing, benchmark
from .onnx import ExportInfo, export_onnx, fold_batch_norms, ort_session, verify_onnx

__all__ = ["RUNTIMES", "ExportInfo", "Timing", "benchmark", "export_onnx", "fold_batch_norms", "ort_session",
           "verify_onnx"]
