"""ONNX Runtime as an optional CPU backend for the SEKD network.

The network is exported once per checkpoint into the cache
(``<cache>/onnx/sekd-<fingerprint>-<export version>.onnx``). The fingerprint is a hash of the
state dict the network actually holds (every tensor's name, dtype, shape and bytes), so a
changed or retrained checkpoint gets a new file and a stale export is never used. The name
is not trusted alone: the export records the fingerprint (and export version) in its ONNX
``metadata_props``, and a file whose record does not match the network (swapped, or written
by another release) is exported again, with a warning. The export is written atomically
(temporary file, then rename), so concurrent processes exporting the same network never see
half a file.

Install with ``pip install -e ".[onnx]"`` (``onnxruntime`` to run, ``onnx`` to export).
A missing package is a :class:`~sekd_plugin.common.errors.ConfigError` saying so.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..common.errors import ConfigError
from ..common.files import write_atomic

logger = logging.getLogger(__name__)

# Bump when the exported graph changes (inputs, outputs, opset, export options).
EXPORT_VERSION = "v1"
OPSET = 17
FINGERPRINT_KEY = "sekd_plugin_fingerprint"  # metadata_props entry: "<fingerprint>-<export version>"
INSTALL_HINT = 'pip install -e ".[onnx]"  (or: pip install onnxruntime onnx)'


def packages_missing(what: str, modules: tuple[str, ...], hint: str) -> str | None:
    """``"<what> needs the package(s) a, b: <hint>"`` for the ``modules`` not installed, or None."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    return f"{what} needs the package(s) {', '.join(missing)}: {hint}" if missing else None


def onnx_missing() -> str | None:
    """Why the ONNX backend cannot run here, or None when it can."""
    return packages_missing("the onnxruntime backend", ("onnxruntime", "onnx"), INSTALL_HINT)


def state_fingerprint(net: nn.Module, length: int = 16) -> str:
    """Hex digest identifying the weights of ``net`` (names, dtypes, shapes, values)."""
    digest = hashlib.sha256()
    for key, value in net.state_dict().items():
        tensor = value.detach().cpu().contiguous()
        digest.update(f"{key}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()[:length]


def export_path(net: nn.Module, cache: str | os.PathLike | None = None, stem: str = "sekd") -> Path:
    """Cache path of the ONNX export of ``net``: ``<cache>/onnx/<stem>-<fingerprint>-<version>.onnx``."""
    if cache is None:
        from ..infra.assets import cache_dir  # late import: assets pulls in the manifests

        cache = cache_dir()
    return Path(cache) / "onnx" / f"{stem}-{state_fingerprint(net)}-{EXPORT_VERSION}.onnx"


class _ProbNet(nn.Module):
    """The graph that is exported: image ``B x 1 x H x W`` -> (prob ``B x 1 x H x W``, raw desc map)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, desc, _ = self.net.features(image)
        return torch.softmax(logits, dim=1)[:, 1:], desc


def export_onnx(net: nn.Module, path: str | os.PathLike) -> Path:
    """Export ``net`` (an ``SEKDNet``) with dynamic batch, height and width to ``path`` atomically."""
    reason = onnx_missing()
    if reason:
        raise ConfigError(reason)
    import onnx

    wrapper = _ProbNet(net).eval().cpu()
    example = torch.rand(1, 1, 64, 64)
    stamp = export_stamp(net)

    def write(tmp: Path) -> None:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the exporter's deprecation / tracer chatter
            torch.onnx.export(
                wrapper, (example,), str(tmp), input_names=["image"], output_names=["prob", "desc"],
                dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"},
                              "prob": {0: "batch", 2: "height", 3: "width"},
                              "desc": {0: "batch", 2: "height_4", 3: "width_4"}},
                opset_version=OPSET, dynamo=False,
            )
        model = onnx.load(str(tmp))
        entry = model.metadata_props.add()
        entry.key, entry.value = FINGERPRINT_KEY, stamp
        onnx.save(model, str(tmp))

    logger.info("exporting the SEKD network to ONNX: %s", path)
    return write_atomic(path, write)


def export_stamp(net: nn.Module) -> str:
    """What an export of ``net`` records in its metadata: ``<fingerprint>-<export version>``."""
    return f"{state_fingerprint(net)}-{EXPORT_VERSION}"


def file_stamp(path: str | os.PathLike) -> str | None:
    """The stamp an ONNX file records (None: no file, or no record); read without a session."""
    import onnx

    if not Path(path).exists():
        return None
    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}.get(FINGERPRINT_KEY)


def recorded_stamp(session) -> str | None:
    """The stamp recorded in the model an ONNX Runtime ``session`` runs, None if none."""
    return session.get_modelmeta().custom_metadata_map.get(FINGERPRINT_KEY)


class OnnxNetwork:
    """Runs an exported SEKD network in ONNX Runtime; called like ``SEKDNet``.

    ``__call__(image B x 1 x H x W float32 CPU tensor) -> (prob B x 1 x H x W, desc B x 128 x H/4 x W/4)``,
    both torch tensors sharing memory with ONNX Runtime's outputs (no copy).
    """

    def __init__(self, net: nn.Module, cache: str | os.PathLike | None = None, threads: int | None = None,
                 optimization: str = "all", model_path: str | os.PathLike | None = None):
        reason = onnx_missing()
        if reason:
            raise ConfigError(reason)
        import onnxruntime as ort

        # model_path: a model made from the export (the int8 one, models/quantize.py), never rewritten here
        self.made = model_path is not None
        self.path = Path(model_path) if self.made else export_path(net, cache)
        if not self.path.exists():
            export_onnx(net, self.path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads or torch.get_num_threads())
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # no busy-waiting after a run: the torch post-processing that follows needs the cores
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        levels = {"basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                  "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                  "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
        if optimization not in levels:
            raise ConfigError(f"onnx optimization must be one of {sorted(levels)}, got '{optimization}'")
        options.graph_optimization_level = levels[optimization]
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # a damaged cache file: export again once
            if self.made:
                raise ConfigError(f"{self.path}: cannot be loaded ({str(error).splitlines()[0] if str(error) else error}); "
                                  "delete it") from None
            logger.warning("re-exporting %s (%s)", self.path, str(error).splitlines()[0] if str(error) else error)
            export_onnx(net, self.path)
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        wanted = export_stamp(net)
        found = recorded_stamp(self.session)
        if found != wanted and self.made:
            raise ConfigError(f"{self.path}: records the network {found or '(none)'}, expected {wanted}; delete it")
        if found != wanted:  # a swapped file, or one of another release: never run the wrong network
            logger.warning("%s records the network %s, not %s; exporting it again", self.path, found or "(none)",
                           wanted)
            export_onnx(net, self.path)
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
            found = recorded_stamp(self.session)
            if found != wanted:
                raise ConfigError(f"{self.path}: the ONNX export records the network {found or '(none)'}, "
                                  f"expected {wanted}; delete it")

    def __call__(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if image.device.type != "cpu":
            raise ConfigError("backend 'onnxruntime' is the CPU fast path; on CUDA use backend 'torch'")
        array = np.ascontiguousarray(image.detach().float().numpy())
        prob, desc = self.session.run(None, {"image": array})
        return torch.from_numpy(prob), torch.from_numpy(desc)

    def info(self) -> dict[str, Any]:
        return {"path": str(self.path), "providers": self.session.get_providers()}
