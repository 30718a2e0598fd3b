"""Freeing the memory a dropped model held: Python's cyclic garbage, then the device's
cache. Where a window runs, the collection runs on its thread instead
(ui/gc_collector.py): a collection destroys every cycle in the process, the window's
too, and a Qt object must be destroyed on the thread it lives in."""

from __future__ import annotations

import gc


def release_memory(device: str | None) -> None:
    """Collect Python's cyclic garbage (a dropped model's tensors among it), then give
    ``device``'s cached blocks back (None: no device to empty)."""
    gc.collect()
    if device is not None:
        empty_device_cache(device)


def empty_device_cache(device: str) -> None:
    """Give the blocks torch's allocator keeps cached on ``device`` back (CUDA, MPS)."""
    import torch

    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    elif device == "mps" and hasattr(torch, "mps"):
        torch.mps.empty_cache()
