"""Static int8 quantisation of the exported SEKD network (ONNX QDQ, int8 weights per output
channel, uint8 activations), for the ``precision: "int8"`` of the ONNX Runtime and OpenVINO
backends.

* **Which layers run int8.** Only convolutions, and only where the parity fixture's top-500
  keypoints survive it: each convolution was quantised alone and the fixture re-extracted
  (docs/results.md, "int8"). The first convolution (it sees the image), the three full-resolution
  blocks, the first half-resolution block (its stride-2 shortcut moved 13 % of the keypoints
  alone) and the detector head stay fp32; the transposed convolutions stay fp32 (grouped, and
  ONNX Runtime's per-channel scales do not handle groups). The residual stream (Add,
  BatchNormalization, ReLU) stays fp32: quantising it moved a third of the keypoints.
  What runs int8: ``resblock1.1``, ``resblock1.2``, ``resblock2.*`` and the descriptor head, about 60 %
  of the network's multiply-adds at 640 x 480.
* **Calibration.** Activation ranges come from a *table* measured on photos (histogram,
  99.999th percentile; :func:`calibrate`, ``python -m sekd_plugin.models.quantize``). The tables
  of the shipped and official networks are shipped (``sekd_plugin/trained/int8/<fingerprint>.json``,
  measured on 32 of ``../shared/data/train_images``), so nothing is measured or downloaded at run
  time; another network needs a table first (one line says the command).
* The int8 model is cached beside the fp32 export, named by the network's fingerprint and the
  table's hash, written atomically.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np
from torch import nn

from ..common.errors import ConfigError
from ..common.files import write_atomic

logger = logging.getLogger(__name__)

QUANT_VERSION = "q1"  # bump when the layer choice or the quantiser options change
# Convolutions that stay fp32 (ONNX node-name prefixes of the export); see the module docstring.
FP32_PREFIXES = ("/conv0/", "/resblock0/", "/resblock1/resblock1.0/", "/detector/")
CALIBRATION_SIZE = (208, 320)  # (H, W): the histogram calibrator needs one size for all images
TABLES_DIR = Path(__file__).resolve().parents[1] / "trained" / "int8"
QUANT_HINT = 'pip install -e ".[onnx]"  (int8 models are made with onnxruntime\'s quantiser)'


def quantizer_missing() -> str | None:
    """Why int8 models cannot be made here, or None."""
    from .onnx_runtime import packages_missing

    return packages_missing("int8", ("onnxruntime", "onnx"), QUANT_HINT)


def calibration_image(gray: np.ndarray, size: tuple[int, int] = CALIBRATION_SIZE) -> np.ndarray:
    """A uint8 ``H x W`` photo as one calibration input ``1 x 1 x h x w`` float32 in [0, 1]:
    landscape, scaled to cover ``size`` (INTER_AREA), centre crop."""
    if gray.shape[0] > gray.shape[1]:
        gray = gray.T
    h, w = size
    scale = max(h / gray.shape[0], w / gray.shape[1])
    resized = cv2.resize(gray, (max(w, round(gray.shape[1] * scale)), max(h, round(gray.shape[0] * scale))),
                         interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    y, x = (resized.shape[0] - h) // 2, (resized.shape[1] - w) // 2
    return (resized[y : y + h, x : x + w].astype(np.float32) / 255)[None, None]


def photo_list(folder: str | os.PathLike, count: int) -> list[Path]:
    """``count`` photos of ``folder`` spread evenly over its sorted listing."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: not a folder of photos")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".ppm", ".bmp"))
    if not files:
        raise ConfigError(f"{folder}: no photos (.jpg, .png, .ppm, .bmp)")
    step = max(1, len(files) // count)
    return files[::step][:count]


def _reader(images: Iterable[np.ndarray]):
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(images)

        def get_next(self):
            image = next(self.it, None)
            return None if image is None else {"image": image}

    return Reader()


def _quantize(fp32: Path, out: Path, table: Path | None, images: Iterable[np.ndarray] | None) -> None:
    """ONNX Runtime's static QDQ quantiser with this module's choices; with ``images``
    the ranges are measured and written to ``table``, else read from it."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="sekd-int8-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        model = onnx.load(str(pre))
        exclude = [n.name for n in model.graph.node if n.op_type == "Conv" and n.name.startswith(FP32_PREFIXES)]
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # the quantiser's per-tensor chatter goes to the root logger
        try:
            quantize_static(
                str(pre), str(out), _reader(images) if images is not None else None,
                quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.Percentile,
                op_types_to_quantize=["Conv"], nodes_to_exclude=exclude,
                calibration_cache_path=str(table) if table is not None else None,
            )
        finally:
            root.setLevel(level)


def calibrate(fp32: str | os.PathLike, photos: Sequence[str | os.PathLike], table: str | os.PathLike,
              fingerprint: str) -> Path:
    """Measure the activation ranges of the fp32 export ``fp32`` on ``photos`` and write the
    table ``table`` (JSON: the network's ``fingerprint``, the quantiser version, the ranges)."""
    reason = quantizer_missing()
    if reason:
        raise ConfigError(reason)
    images = []
    for path in photos:
        gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if gray is None:
            raise ConfigError(f"{path}: not a readable image")
        images.append(calibration_image(gray))
    with tempfile.TemporaryDirectory(prefix="sekd-calib-") as tmp:
        ranges = Path(tmp) / "ranges.json"
        _quantize(Path(fp32), Path(tmp) / "model.onnx", ranges, images)
        payload = {"fingerprint": fingerprint, "quantizer": QUANT_VERSION, "images": len(images),
                   "size": list(CALIBRATION_SIZE), "ranges": json.loads(ranges.read_text())}
    return write_atomic(table, lambda tmp: Path(tmp).write_text(json.dumps(payload, indent=1)))


def table_for(fingerprint: str, table: str | os.PathLike | None = None) -> Path:
    """The calibration table to use: ``table`` when given, else the shipped one of this network;
    a table of another network (or none) is one line with the command that makes one."""
    path = Path(table) if table else TABLES_DIR / f"{fingerprint}.json"
    make = ("python -m sekd_plugin.models.quantize --weights <checkpoint> --images <folder of your photos> "
            "--output TABLE.json, then int8_table=TABLE.json")
    if not path.is_file():
        raise ConfigError(f"no int8 calibration table for this network (fingerprint {fingerprint}): {make}")
    try:
        found = json.loads(path.read_text()).get("fingerprint")
    except (OSError, ValueError, AttributeError) as error:
        raise ConfigError(f"{path}: not an int8 calibration table ({error})") from None
    if found != fingerprint:
        raise ConfigError(f"{path}: calibration table of the network {found}, not of this one ({fingerprint}): {make}")
    return path


def int8_model(fp32: str | os.PathLike, table: str | os.PathLike) -> Path:
    """The int8 model of the fp32 export ``fp32`` with the ranges of ``table`` (cached beside
    the export, named by the table's hash and :data:`QUANT_VERSION`)."""
    reason = quantizer_missing()
    if reason:
        raise ConfigError(reason)
    fp32, table = Path(fp32), Path(table)
    text = table.read_bytes()
    digest = hashlib.sha256(text + QUANT_VERSION.encode()).hexdigest()[:12]
    out = fp32.with_name(f"{fp32.stem}-int8-{digest}.onnx")
    if out.exists():
        return out
    ranges = json.loads(text)["ranges"]

    def write(tmp: Path) -> None:
        with tempfile.TemporaryDirectory(prefix="sekd-int8-") as work:
            cache = Path(work) / "ranges.json"
            cache.write_text(json.dumps(ranges))
            _quantize(fp32, tmp, cache, None)
        import onnx  # the int8 model records the network of the export it was made from

        stamps = {p.key: p.value for p in onnx.load(str(fp32)).metadata_props}
        model = onnx.load(str(tmp))
        del model.metadata_props[:]
        for key, value in stamps.items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(model, str(tmp))

    logger.info("making the int8 model %s", out)
    return write_atomic(out, write)


def int8_export(net: nn.Module, table: str | os.PathLike | None = None,
                cache: str | os.PathLike | None = None) -> Path:
    """The int8 model of ``net``: its fp32 export (made or re-made when missing or stale), then
    :func:`int8_model` with ``table`` (None: the shipped table of the network)."""
    from .onnx_runtime import export_onnx, export_path, export_stamp, file_stamp, state_fingerprint

    table_path = table_for(state_fingerprint(net), table)
    fp32 = export_path(net, cache)
    if file_stamp(fp32) != export_stamp(net):
        export_onnx(net, fp32)
    return int8_model(fp32, table_path)


def main(weights: str, images: str | os.PathLike, output: str | os.PathLike, num_images: int = 32) -> Path:
    """Write the calibration table of the checkpoint ``weights`` (file or weights name) measured
    on ``num_images`` photos of the folder ``images``."""
    from ..infra import assets
    from .checkpoint import load_weights
    from .onnx_runtime import export_onnx, export_path, state_fingerprint
    from .sekd import SEKDNet

    photos = photo_list(images, num_images)
    named = not Path(weights).suffix and not Path(weights).exists()
    located = assets.locate(str(weights)) if named else assets.locate("sekd", weights)
    if not located.found:
        raise assets.AssetNotFoundError(located.reason)
    net: nn.Module = load_weights(SEKDNet(), located.path).eval()
    fp32 = export_path(net)
    if not fp32.exists():
        export_onnx(net, fp32)
    return calibrate(fp32, photos, output, state_fingerprint(net))


def cli(argv: Sequence[str] | None = None) -> int:
    from ..common.cli import positive_int, run_cli

    parser = argparse.ArgumentParser(prog="python -m sekd_plugin.models.quantize", description=(
        "Measure the int8 activation ranges of an SEKD checkpoint on photos; backend onnxruntime or "
        "openvino with precision int8 then uses model.int8_table=OUTPUT."))
    parser.add_argument("--weights", required=True, help="checkpoint file or weights name (sekd, sekd_evolved, ...)")
    parser.add_argument("--images", required=True, help="folder of photos to calibrate on")
    parser.add_argument("--num-images", type=positive_int, default=32, help="photos used, spread over the folder")
    parser.add_argument("--output", required=True, help="the table to write (.json)")
    args = parser.parse_args(argv)
    return run_cli(main, weights=args.weights, images=args.images, output=args.output, num_images=args.num_images,
                   on_success=lambda path: print(f"wrote {path}"))


if __name__ == "__main__":
    raise SystemExit(cli())
