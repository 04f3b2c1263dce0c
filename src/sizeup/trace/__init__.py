"""Exact mode: trace a real training step of the Hugging Face model on fake tensors (extra `sizeup[trace]`).

Nothing here imports torch at import time; `trace_training` does, and raises a one-line
SizeupError ("exact mode needs the trace extra ...") when torch/transformers are missing.
"""

from sizeup.trace.tracer import INSTALL_HINT, TraceResult, trace_available, trace_training

__all__ = ["INSTALL_HINT", "TraceResult", "trace_available", "trace_training"]
