"""rlvr/rollout/cpu_pages.py: pages returned to the kernel read as zeros, the partial pages at
a storage's ends keep their bytes, and the process's resident memory drops."""

from __future__ import annotations

import sys

import pytest
import torch

from rlvr.rollout.cpu_pages import page_span, release_pages

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="madvise: Linux only")


def test_page_span_keeps_to_whole_pages() -> None:
    # [4100, 4100 + 10000) holds the pages [8192, 12288): one page; a span inside one page: none
    assert page_span(4100, 10000, page=4096) == (8192, 4096)
    assert page_span(4096, 8192, page=4096) == (4096, 8192)
    assert page_span(4097, 4000, page=4096) == (8192, 0)
    assert page_span(0, 4095, page=4096) == (0, 0)


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@linux
def test_release_zeroes_whole_pages_keeps_edges_and_frees_memory() -> None:
    t = torch.ones(64 * 2**20 // 4)  # 64 MiB, resident (written)
    ptr, nbytes = t.untyped_storage().data_ptr(), t.untyped_storage().nbytes()
    start, length = page_span(ptr, nbytes)
    before = _rss_mib()
    view = t[1000:]  # a view: its storage, the whole tensor, is released once
    assert release_pages([t, view]) == length
    freed = before - _rss_mib()
    assert freed > 60, f"resident memory fell by {freed:.1f} MiB of 64"
    raw = t.view(torch.uint8)
    head, tail = start - ptr, start + length - ptr
    one = torch.ones(1).view(torch.uint8)
    assert torch.equal(raw[:head], one.repeat(head // 4 + 1)[:head])  # partial first page kept
    assert int(raw[head:tail].count_nonzero()) == 0  # whole pages read as zeros
    assert torch.equal(raw[tail:].view(torch.float32), torch.ones((nbytes - tail) // 4))
    t.fill_(2.0)  # still a working tensor: written pages come back
    assert float(t.sum()) == 2.0 * t.numel()


def test_release_refuses_non_cpu_tensors() -> None:
    with pytest.raises(ValueError, match="CPU tensors only"):
        release_pages([torch.empty(4, device="meta")])
