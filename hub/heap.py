"""The hub's C heap: gRPC's and BoringSSL's per-link buffers in mappings of their own (glibc).

Each mutual-TLS agent link holds buffers of 8 to 17 KiB (BoringSSL's two BIO buffers, gRPC's
secure-endpoint staging buffers, the TLS frame protector) of which a heartbeat of a few
hundred bytes touches a page or two. On glibc's heap they land on pages that earlier, short-
lived allocations already touched, so each counts resident whole, and the heap fragments as
agents come and go. At an mmap threshold of 8,200 bytes each such buffer gets a mapping of its
own, resident only where it was written, and returns to the system when freed
(`python -m bench.link_memory`: 88.5 -> 74 KiB per link; after links churned 114 -> 78 KiB).

An operator's own glibc malloc tunables (GLIBC_TUNABLES) win; other C libraries are left alone.
"""

from __future__ import annotations

import ctypes
import os

M_MMAP_THRESHOLD = -3  # mallopt parameters, <malloc.h>
M_MMAP_MAX = -4
THRESHOLD = 8200  # bytes: an 8 KiB buffer with glibc's chunk header is mapped on its own
# glibc's default cap of 65,536 mapped chunks is about what 10,000 links hold (60,197 there);
# past the cap glibc silently uses the heap again. The kernel merges adjacent mappings, so
# vm.max_map_count (65,530) is not the limit: 705 mappings with 10,000 links.
MAPPED_MAX = 262_144


def tune() -> str | None:
    """Set the threshold; what was set (for the log), or None when left to glibc's defaults."""
    if "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return None
    libc = ctypes.CDLL(None)
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
        return None  # not glibc (musl's mallopt does nothing)
    if not (libc.mallopt(M_MMAP_THRESHOLD, THRESHOLD) and libc.mallopt(M_MMAP_MAX, MAPPED_MAX)):
        return None
    return f"C heap: blocks of {THRESHOLD} bytes or more in their own mappings (up to {MAPPED_MAX})"
