"""Device setup for the hand-written inference loops (``arena.predict``, ``arena.merge``,
``arena.pseudo_label``, ``arena.generate``); training leaves this to Lightning."""

from __future__ import annotations

import os

import torch


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda[:k]`` or ``auto`` (CUDA when available); under torchrun, the local GPU.

    Raises:
        RuntimeError: a CUDA device is asked for and there is none.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device={name} but CUDA is not available; use device=cpu")
        if device.index is None and "LOCAL_RANK" in os.environ:
            device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return device


def init_distributed(device: torch.device) -> None:
    """Join the process group torchrun describes (nothing to do in a single process)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.distributed.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
