"""Nearest neighbours of float descriptors by blocks of rows, without the full similarity matrix.

Why: on a CPU, mutual matching of 4,096 x 4,096 descriptors spent most of its time not in the
matrix product but around it: page-faulting a fresh 64 MB similarity matrix, copying its
transpose for the column argmax, and ``torch.max`` with indices (an unvectorised reduction).
Here the product is made ``block_rows`` rows at a time into one reused buffer, and both argmaxes
are taken by :func:`first_max`: vectorised maxima of chunks of 64 entries, then the index
searched inside the winning chunk only.

The decisions equal those of the full-matrix path (one product, ``torch.max`` over rows and
columns, ties to the lowest index): up to ``block_rows`` rows the one block is the full-matrix
einsum itself; beyond, every block is a product of exactly ``block_rows`` rows (a short product
may take another kernel, hence other bits), whose entries the tests pin bitwise equal to the
full product's; and :func:`first_max` returns the first index of the maximum, as ``torch.max``.
The matcher's tests pin the matches on random, near-tie and duplicated descriptors.
"""

from __future__ import annotations

import numpy as np
import torch

BLOCK_ROWS = 1024  # 1,024 x 4,096 fp32 = 16 MB: few parallel regions, and no 64 MB matrix
MIN_BLOCK_ROWS = 256  # products of fewer rows may take another kernel (other bits): never split finer
CHUNK = 64  # entries per chunk of first_max along a row: chunk maxima vectorise, the index search stays small
COL_CHUNK = 16  # along a column: the search reads one chunk per column, scattered rows (measured: 16 < 64)


def first_max(x: torch.Tensor, dim: int, chunk: int = CHUNK, second: bool = False):
    """Maximum of a 2-D CPU ``x`` along ``dim`` (0 or 1) and the FIRST index reaching it (``torch.max``'s).

    Equal to ``x.max(dim)`` (values and indices, ties included) for NaN-free input, but mostly
    vectorised: the maxima of chunks of ``chunk`` entries (one ``amax``, on torch's threads), the
    first chunk reaching the overall maximum, and the first maximum within that chunk only. The
    steps on chunk-sized arrays run in numpy, serially: as torch operations each would be a
    parallel region, which costs a scheduling slice on a busy CPU. Returns ``(values, indices)``,
    two tensors of ``x.shape`` without ``dim``; with ``second``, also the second largest value of
    each line (the line without the entry at the returned index; equal to the maximum on a tie).
    """
    n = x.shape[dim]
    whole = n - n % chunk
    parts = []
    if whole:
        shape = list(x.shape)
        shape[dim:dim + 1] = [whole // chunk, chunk]
        parts.append(x.narrow(dim, 0, whole).view(shape).amax(dim + 1))
    if whole < n:
        parts.append(x.narrow(dim, whole, n - whole).amax(dim, keepdim=True))
    chunk_max = (torch.cat(parts, dim) if len(parts) > 1 else parts[0]).detach().numpy()
    which = np.expand_dims(chunk_max.argmax(axis=dim), dim)  # the first chunk holding the maximum
    best = np.take_along_axis(chunk_max, which, dim)
    steps = np.arange(chunk)
    offsets = which * chunk + (steps if dim == 1 else steps[:, None])
    # offsets past the end (a last, short chunk) repeat the last entry after its true place: never first
    values = _take(x.detach().numpy(), np.minimum(offsets, n - 1), dim)
    inner = values.argmax(axis=dim)
    index = torch.from_numpy(which.squeeze(dim) * chunk + inner)
    best = torch.from_numpy(best.squeeze(dim))
    if not second:
        return best, index
    values[offsets >= n] = -np.inf
    np.put_along_axis(values, np.expand_dims(inner, dim), -np.inf, dim)
    np.put_along_axis(chunk_max, which, -np.inf, dim)
    return best, index, torch.from_numpy(np.maximum(values.max(axis=dim), chunk_max.max(axis=dim)))


def _take(x: np.ndarray, offsets: np.ndarray, dim: int) -> np.ndarray:
    """``np.take_along_axis(x, offsets, dim)``; along the rows (``dim == 0``) of a C-contiguous
    ``x``, read in memory order: each column reads its own winning chunk of rows, which in
    column order jumps between rows (cache misses); sorting the columns by chunk halves the time."""
    if dim == 1 or not x.flags.c_contiguous:
        return np.take_along_axis(x, offsets, dim)
    order = np.argsort(offsets[0], kind="stable")  # columns by first row read
    flat = x.reshape(-1)[offsets[:, order] * x.shape[1] + order]
    values = np.empty_like(flat)
    values[:, order] = flat
    return values


def _full_product(desc0: torch.Tensor, desc1: torch.Tensor) -> torch.Tensor:
    """``N0 x N1`` similarity in one product, made exactly as the full-matrix matcher makes it."""
    return torch.einsum("bdn,bdm->bnm", desc0[None].float(), desc1[None].float())[0]


def _blocks(desc0: torch.Tensor, desc1: torch.Tensor, rows: int):
    """Yield ``(fresh, block)``: ``block`` holds the similarity rows ``fresh .. fresh + len(block)``.

    One block: the full product. Otherwise every product has ``rows`` rows (into one reused
    buffer), the last one overlapping its predecessor (only its new rows are yielded) instead of
    being a short product. The row slices are views of ``desc0`` transposed: the layout the
    einsum of the full-matrix path hands to the matrix product.
    """
    n0 = desc0.shape[1]
    if n0 <= rows:
        yield 0, _full_product(desc0, desc1).contiguous()  # first_max views it by chunks
        return
    buf = torch.empty(rows, desc1.shape[1], device=desc0.device)
    done = 0
    while done < n0:
        start = min(done, n0 - rows)
        torch.mm(desc0[:, start:start + rows].t(), desc1, out=buf)
        yield done, buf[done - start:]
        done = start + rows


def nearest_neighbors_blocked(
    desc0: torch.Tensor,
    desc1: torch.Tensor,
    k: int = 1,
    mutual_check: bool = True,
    block_rows: int = BLOCK_ROWS,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Row-wise best (and second best) similarity of ``D x N0`` against ``D x N1`` descriptors.

    Args:
        desc0: ``D x N0`` float descriptors (N0 >= 1).
        desc1: ``D x N1`` float descriptors (N1 >= k).
        k: 1, or 2 to also return the second best similarity (ratio test).
        mutual_check: also return whether each row's neighbour has that row as its own.
        block_rows: rows of the similarity computed at a time (at least ``MIN_BLOCK_ROWS``);
            ``N0 <= block_rows``: one full product.
    Returns:
        ``s1`` ``N0`` best similarity, ``nn01`` ``N0`` its first column (long), ``s2`` ``N0``
        the second best (None when ``k == 1``), ``mutual`` ``N0`` bool (None without the check).
    """
    desc0, desc1 = desc0.float(), desc1.float().contiguous()
    n0, n1, dev = desc0.shape[1], desc1.shape[1], desc0.device
    rows = max(block_rows, MIN_BLOCK_ROWS)
    s1 = torch.empty(n0, device=dev)
    nn01 = torch.empty(n0, dtype=torch.long, device=dev)
    s2 = torch.empty(n0, device=dev) if k == 2 else None
    col_max = torch.full((n1,), float("-inf"), device=dev)
    nn10 = torch.zeros(n1, dtype=torch.long, device=dev)
    for fresh, block in _blocks(desc0, desc1, rows):
        stop = fresh + block.shape[0]
        if k == 2:
            s1[fresh:stop], nn01[fresh:stop], s2[fresh:stop] = first_max(block, 1, second=True)
        else:
            s1[fresh:stop], nn01[fresh:stop] = first_max(block, 1)
        if mutual_check:
            value, row = first_max(block, 0, COL_CHUNK)
            # strictly larger only: among equal maxima the earlier block (lower row) stays
            better = (value > col_max) | (value.isnan() & ~col_max.isnan())
            col_max = torch.where(better, value, col_max)
            nn10 = torch.where(better, row + fresh, nn10)
    mutual = nn10[nn01] == torch.arange(n0, device=dev) if mutual_check else None
    return s1, nn01, s2, mutual
