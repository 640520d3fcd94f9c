"""Runs RapidOCR's ONNX models on OpenVINO, one thread each.

OpenVINO rather than onnxruntime, for the same outputs faster (docs/benchmarks.md): onnxruntime
leaves much of recognition in unfused elementwise ops (hard-swish and the learnable affine
after each convolution: Mul, Add, Clip, Div); OpenVINO fuses them into the convolutions.
Parallelism comes from processes (ocr/pool.py), so each model gets exactly one thread.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ocr.engine import OcrSetupError

CONFIG = {"INFERENCE_NUM_THREADS": 1, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY", "ENABLE_CPU_PINNING": False}


class OpenVinoModel:
    """Called like rapidocr's session (`model(x)[0]`), so its pre- and post-processing stay."""

    def __init__(self, path: str | Path) -> None:
        try:
            import openvino as ov
        except ImportError as exc:
            raise OcrSetupError("无法加载 OpenVINO，请运行 `make setup`",
                                f"openvino cannot be loaded ({exc}); run `make setup`") from exc
        self.request = ov.Core().compile_model(str(path), "CPU", CONFIG).create_infer_request()

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        # copy: the request reuses its output buffer on the next call
        return [self.request.infer({0: np.ascontiguousarray(x, dtype=np.float32)})[0].copy()]
