"""OpenVINO as an optional CPU backend for the SEKD network (``pip install -e ".[openvino]"``).

It runs the same ONNX files as :mod:`sekd_plugin.models.onnx_runtime` (the fp32 export, or the
int8 model of :mod:`sekd_plugin.models.quantize`): OpenVINO turns the int8 model's
quantise / dequantise pairs into int8 convolutions with the neighbouring fp32 operations fused,
which ONNX Runtime's CPU kernels do not (measured: docs/results.md, "int8").
Shapes are dynamic (any image size); a missing package is a :class:`ConfigError` saying so.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..common.errors import ConfigError

INSTALL_HINT = 'pip install -e ".[openvino]"  (or: pip install openvino onnxruntime onnx)'


def openvino_missing() -> str | None:
    """Why the OpenVINO backend cannot run here, or None when it can."""
    from .onnx_runtime import packages_missing

    return packages_missing("the openvino backend", ("openvino", "onnx"), INSTALL_HINT)


class OpenVinoNetwork:
    """Runs an exported SEKD network in OpenVINO on the CPU; called like ``SEKDNet``.

    ``__call__(image B x 1 x H x W float32 CPU tensor) -> (prob B x 1 x H x W, desc B x 128 x H/4 x W/4)``.
    """

    def __init__(self, net: nn.Module, cache: str | os.PathLike | None = None, threads: int | None = None,
                 model_path: str | os.PathLike | None = None):
        reason = openvino_missing()
        if reason:
            raise ConfigError(reason)
        import openvino as ov

        from .onnx_runtime import export_onnx, export_path, export_stamp, file_stamp

        # model_path: a model made from the export (the int8 one, models/quantize.py); else the fp32 export
        path = Path(model_path) if model_path is not None else export_path(net, cache)
        if file_stamp(path) != export_stamp(net):
            if model_path is not None:
                raise ConfigError(f"{path}: does not record this network; delete it")
            export_onnx(net, path)
        self.path = path
        core = ov.Core()
        # fp32 arithmetic where the model is fp32 (OpenVINO may otherwise pick bf16 on CPUs that have it)
        config = {"INFERENCE_NUM_THREADS": int(threads or torch.get_num_threads()), "PERFORMANCE_HINT": "LATENCY",
                  "INFERENCE_PRECISION_HINT": "f32"}
        self.compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
        self.request = self.compiled.create_infer_request()

    def __call__(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if image.device.type != "cpu":
            raise ConfigError("backend 'openvino' is a CPU path; on CUDA use backend 'torch'")
        out = self.request.infer({0: np.ascontiguousarray(image.detach().float().numpy())})
        # the request reuses its output buffers on the next call: copy
        return torch.from_numpy(np.array(out[0])), torch.from_numpy(np.array(out[1]))

    def info(self) -> dict[str, Any]:
        return {"path": str(self.path), "device": "CPU"}
