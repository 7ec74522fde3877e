"""The machine's measured matrix-product peak, and a method's achieved FLOP rate against it.

Why: "ms per image" alone does not say how far an extractor is from what the CPU can do. The
speed command times, in the same run and on the same threads, square products through torch
(fp32 ``torch.mm``; bf16 ``torch.mm``; int8 ``torch._int_mm``, int32 accumulation) and through
onnxruntime (``MatMul`` fp32, ``MatMulInteger`` uint8 x int8: the kernels of the ONNX backends),
and keeps the best of a few: a practical peak for convolution-heavy networks (which run as such products).
A dtype the CPU lacks a fast path for (e.g. bf16 without AVX-512 BF16 / AMX) is emulated and
very slow; its product is shrunk so that one call stays short, and the size is reported.
"""

from __future__ import annotations

import time

import torch

DTYPES = ("fp32", "bf16", "int8", "ort-fp32", "ort-int8")
OPS = {"fp32": "torch.mm fp32", "bf16": "torch.mm bf16", "int8": "torch._int_mm int8 -> int32",
       "ort-fp32": "onnxruntime MatMul fp32", "ort-int8": "onnxruntime MatMulInteger u8 x s8 -> int32"}


def gflops_per_s(gflop: float | None, ms: float | None) -> float | None:
    """GFLOP/s achieved by ``gflop`` GFLOP of work done in ``ms`` milliseconds (None if unknown)."""
    if gflop is None or ms is None or ms <= 0:
        return None
    return gflop / (ms / 1000)


def fraction_of(rate: float | None, peak: float | None) -> float | None:
    """``rate / peak`` (e.g. 0.25 = 25 % of the peak), None when either is unknown."""
    if rate is None or not peak:
        return None
    return rate / peak


def _operands(dtype: str, n: int, device: torch.device):
    g = torch.Generator().manual_seed(0)
    if dtype == "ort-int8":  # MatMulInteger: activations uint8, weights int8 (numpy arrays)
        return (torch.randint(0, 128, (n, n), generator=g, dtype=torch.uint8).numpy(),
                torch.randint(-64, 64, (n, n), generator=g, dtype=torch.int8).numpy())
    if dtype == "ort-fp32":
        return tuple(torch.randn(n, n, generator=g).numpy() for _ in range(2))
    if dtype == "int8":
        a, b = (torch.randint(-64, 64, (n, n), generator=g, dtype=torch.int8) for _ in range(2))
    else:
        a, b = (torch.randn(n, n, generator=g).to(torch.bfloat16 if dtype == "bf16" else torch.float32)
                for _ in range(2))
    return a.to(device), b.to(device)


def _ort_product(dtype: str):
    """``(a, b) -> a @ b`` through an onnxruntime session of one ``MatMul`` / ``MatMulInteger`` node,
    on torch's number of threads (as the ONNX backends)."""
    from ..models.onnx_runtime import onnx_missing

    if onnx_missing():
        raise RuntimeError(onnx_missing())
    import onnxruntime as ort
    from onnx import TensorProto, helper

    int8 = dtype == "ort-int8"
    types = (TensorProto.UINT8, TensorProto.INT8, TensorProto.INT32) if int8 else (TensorProto.FLOAT,) * 3
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger" if int8 else "MatMul", ["A", "B"], ["Y"])], "peak",
        [helper.make_tensor_value_info("A", types[0], ["m", "k"]), helper.make_tensor_value_info("B", types[1], ["k", "n"])],
        [helper.make_tensor_value_info("Y", types[2], ["m", "n"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return lambda a, b: session.run(None, {"A": a, "B": b})


def _product(dtype: str):
    if dtype.startswith("ort-"):
        return _ort_product(dtype)
    return torch._int_mm if dtype == "int8" else torch.mm


def _seconds(fn, a, b, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn(a, b)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def matmul_peak(dtype: str = "fp32", size: int = 2048, repeats: int = 5, max_seconds: float = 0.5,
                device: torch.device | str = "cpu") -> dict:
    """Best rate of ``n x n @ n x n`` products of ``dtype`` (``fp32``, ``bf16``, ``int8``).

    ``n`` starts at 256 and doubles up to ``size`` while the next product is predicted (8x the
    last) to take under ``max_seconds``. Returns ``{"dtype", "op", "size", "ms", "gflops"}`` (the
    best of ``repeats`` products after one warm-up; GFLOP = 2 n^3 / 1e9, integer operations
    for int8), or ``{"dtype", "op", "error"}`` when this torch / device cannot run it.
    """
    device = torch.device(device)
    n = min(256, size)
    try:
        if dtype.startswith("ort-") and device.type != "cpu":
            raise RuntimeError("the onnxruntime backends run on the CPU only")
        fn = _product(dtype)
        a, b = _operands(dtype, n, device)
        took = _seconds(fn, a, b, device)  # also the warm-up of the smallest size
        while 2 * n <= size and 8 * took < max_seconds:
            n *= 2
            a, b = _operands(dtype, n, device)
            took = _seconds(fn, a, b, device)
        best = min(_seconds(fn, a, b, device) for _ in range(repeats))
    except (RuntimeError, NotImplementedError, AttributeError, ImportError) as err:  # e.g. no int8 kernel
        return {"dtype": dtype, "op": OPS[dtype], "error": f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"}
    return {"dtype": dtype, "op": OPS[dtype], "size": n, "ms": 1000 * best,
            "gflops": gflops_per_s(2 * n ** 3 / 1e9, 1000 * best)}


def fp32_product(size: int, device: torch.device | str = "cpu"):
    """A callable making one ``size``-cube fp32 product (the peak's), to time among other work."""
    device = torch.device(device)
    a, b = _operands("fp32", size, device)
    return lambda: torch.mm(a, b)


def matmul_peaks(device: torch.device | str = "cpu", size: int = 2048, repeats: int = 5,
                 dtypes=DTYPES) -> list[dict]:
    """:func:`matmul_peak` of every dtype, each row also naming the torch threads used."""
    threads = torch.get_num_threads() if torch.device(device).type == "cpu" else None
    return [{**matmul_peak(d, size, repeats, device=device), "threads": threads} for d in dtypes]


def describe(peaks: list[dict]) -> str:
    """One line: ``fp32 412.3 GFLOP/s (torch.mm fp32, 2048^3, best of 5); ...``."""
    parts = []
    for p in peaks:
        if "error" in p:
            parts.append(f"{p['dtype']} n/a ({p['error']})")
        else:
            unit = "GOP/s" if p["dtype"].endswith("int8") else "GFLOP/s"
            parts.append(f"{p['dtype']} {p['gflops']:.1f} {unit} ({p['op']}, {p['size']}^3)")
    return "; ".join(parts)
