"""Return a CPU tensor's memory pages to the operating system without freeing the tensor.

vLLM's CPU backend has no sleep mode: its KV cache, allocated whole when the engine starts
(``rollout.kv_cache_gib``), stays resident while the colocated trainer runs its update. Between
rollouts the cache's contents are dead (rlvr resets the prefix cache with them), so its pages
can go back to the kernel:

    madvise(addr, length, MADV_DONTNEED)

on the page-aligned interior of each storage. For private anonymous memory (what torch's CPU
allocator hands out, heap or mmap) "subsequent accesses of pages in the range will succeed, but
will result in ... zero-fill-on-demand pages" (madvise(2), Linux man-pages). The tensor keeps
its address and size; the next rollout faults in, zero-filled, only the pages it writes, so the
resident cost of the KV cache becomes the blocks one rollout uses, not its configured size.
Linux only (other systems: nothing released, 0 returned).
"""

from __future__ import annotations

import ctypes
import mmap
import sys
from collections.abc import Callable, Iterable

import torch

MADV_DONTNEED = 4  # <sys/mman.h> on Linux

_libc: ctypes.CDLL | None = None


def _madvise() -> Callable[[int, int, int], int] | None:
    global _libc
    if not sys.platform.startswith("linux"):
        return None
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        _libc.madvise.restype = ctypes.c_int
    return _libc.madvise


def page_span(ptr: int, nbytes: int, page: int = mmap.PAGESIZE) -> tuple[int, int]:
    """The whole pages inside [ptr, ptr + nbytes): (first page's address, length in bytes);
    length 0 when no whole page fits. Partial pages at either end are left alone: they may
    hold a neighbouring allocation's bytes."""
    start = -(-ptr // page) * page
    end = (ptr + nbytes) // page * page
    return start, max(end - start, 0)


def release_pages(tensors: Iterable[torch.Tensor]) -> int:
    """Give back the resident pages of the CPU ``tensors``' storages (each distinct storage
    once); their contents read as zeros afterwards. Returns the bytes advised."""
    madvise = _madvise()
    if madvise is None:
        return 0
    storages: dict[int, int] = {}
    for t in tensors:
        if t.device.type != "cpu":
            raise ValueError(f"release_pages: a {t.device.type} tensor (CPU tensors only)")
        s = t.untyped_storage()
        storages[s.data_ptr()] = max(storages.get(s.data_ptr(), 0), s.nbytes())
    released = 0
    for ptr, nbytes in storages.items():
        start, length = page_span(ptr, nbytes)
        if length and madvise(start, length, MADV_DONTNEED) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"madvise(MADV_DONTNEED) on {length} bytes failed")
        released += length
    return released
