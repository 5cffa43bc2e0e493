"""The Vulkan devices this host's loader sees, through ctypes (no Python Vulkan package):
vkCreateInstance, vkEnumeratePhysicalDevices, vkGetPhysicalDeviceProperties. Run as a script in
its own process (a driver that crashes takes only that process down); prints JSON:
{"loader": true, "devices": [{"name": "llvmpipe (...)", "type": "cpu"}], "error": ""}.
"""

from __future__ import annotations

import ctypes
import json
import sys
from typing import Any

LOADER = "libvulkan.so.1"
TYPES = {0: "other", 1: "integrated", 2: "discrete", 3: "virtual", 4: "cpu"}
PROPERTIES_BYTES = 4096  # VkPhysicalDeviceProperties is 824 bytes; room to spare
NAME_OFFSET, NAME_BYTES, TYPE_OFFSET = 20, 256, 16


class _CreateInfo(ctypes.Structure):
    _fields_ = [
        ("sType", ctypes.c_int32),
        ("pNext", ctypes.c_void_p),
        ("flags", ctypes.c_uint32),
        ("pApplicationInfo", ctypes.c_void_p),
        ("enabledLayerCount", ctypes.c_uint32),
        ("ppEnabledLayerNames", ctypes.c_void_p),
        ("enabledExtensionCount", ctypes.c_uint32),
        ("ppEnabledExtensionNames", ctypes.c_void_p),
    ]


def devices() -> dict[str, Any]:
    try:
        vulkan = ctypes.CDLL(LOADER)
    except OSError as exc:
        return {"loader": False, "devices": [], "error": str(exc)}
    info = _CreateInfo(sType=1)  # VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO
    instance = ctypes.c_void_p()
    result = vulkan.vkCreateInstance(ctypes.byref(info), None, ctypes.byref(instance))
    if result != 0:
        return {"loader": True, "devices": [], "error": f"vkCreateInstance returned {result}"}
    try:
        count = ctypes.c_uint32(0)
        vulkan.vkEnumeratePhysicalDevices(instance, ctypes.byref(count), None)
        handles = (ctypes.c_void_p * max(count.value, 1))()
        vulkan.vkEnumeratePhysicalDevices(instance, ctypes.byref(count), handles)
        found = []
        for index in range(count.value):
            raw = ctypes.create_string_buffer(PROPERTIES_BYTES)
            vulkan.vkGetPhysicalDeviceProperties(ctypes.c_void_p(handles[index]), raw)
            kind = int.from_bytes(raw.raw[TYPE_OFFSET : TYPE_OFFSET + 4], "little")
            name = raw.raw[NAME_OFFSET : NAME_OFFSET + NAME_BYTES].split(b"\0")[0]
            found.append({"name": name.decode(errors="replace"), "type": TYPES.get(kind, "other")})
        return {"loader": True, "devices": found, "error": ""}
    finally:
        vulkan.vkDestroyInstance(instance, None)


if __name__ == "__main__":
    json.dump(devices(), sys.stdout)
