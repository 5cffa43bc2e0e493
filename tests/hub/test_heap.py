"""The hub's C heap maps gRPC's per-link buffers (8-17 KiB) on their own (hub/heap.py):
checked through glibc's own count of mapped blocks, in a fresh interpreter each."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from hub import heap
from tests.conftest import need
from tests.hub.test_lazy_imports import run
from tests.packaging.test_sdnotify import start_hub

# 128 buffers of 12 KiB, like TLS links' staging buffers: glibc's default threshold (128 KiB)
# keeps them on the heap; at the hub's, those the heap's free top cannot hold are mapped.
# Prints: mapped blocks they added before tune(), what tune() said, mapped blocks after.
PROBE = """
import ctypes
from hub import heap

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2

def added():
    before = libc.mallinfo2().hblks
    buffers = [bytearray(12 * 1024) for _ in range(128)]
    return libc.mallinfo2().hblks - before

first = added()
tuned = heap.tune()
print(first, tuned is not None, added())
"""


def probe(**env: str) -> list[str]:
    return run(PROBE, **env).split()


@pytest.fixture
def glibc() -> None:
    """The hub tunes glibc's malloc only: elsewhere these skip (under CI=true they fail)."""
    if not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None:
        need("this C library is not glibc: run on a glibc Linux (Debian, Fedora)")


@pytest.mark.usefixtures("glibc")
def test_a_link_sized_buffer_gets_a_mapping_of_its_own() -> None:
    before, tuned, after = probe()
    assert (before, tuned) == ("0", "True")
    assert int(after) >= 64  # most: the free top held about 18 in a trial


@pytest.mark.usefixtures("glibc")
def test_an_operators_own_malloc_tunables_win() -> None:
    tunables = "glibc.malloc.arena_max=2"
    assert probe(GLIBC_TUNABLES=tunables) == ["0", "False", "0"]


@pytest.mark.usefixtures("glibc")
def test_the_hub_daemon_tunes_its_heap_at_start(tmp_path: Path) -> None:
    hub = start_hub(tmp_path)
    try:
        hub.wait_serving()
        assert f"C heap: blocks of {heap.THRESHOLD} bytes or more in their own mappings" in (
            hub.log()
        )
    finally:
        hub.terminate()
        hub.cleanup()
