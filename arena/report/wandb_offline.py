"""Read an offline W&B run (``<run dir>/wandb/offline-run-*/run-*.wandb``) without a W&B account.

wandb 0.31 no longer ships a Python reader for its run files (the Go core writes them), so this
module decodes the container itself and the records with wandb's own protobuf classes. The file
is a 7-byte header (``:W&B``, magic, version) followed by a LevelDB-style log: 32 KiB blocks of
chunks ``crc32 (4) | length (2, little-endian) | type (1) | payload``, where type 1 is a whole
record and 2/3/4 are the first, middle and last pieces of one split across blocks.

Usage::

    run = read_wandb_run(next(find_wandb_files(run_dir)))
    run.history  # DataFrame, one row per logged step
    run.summary["val/log_loss"], run.config["data"]["fold"]
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["WandbRun", "find_wandb_files", "read_wandb_run", "wandb_records"]

_HEADER = b":W&B"
_BLOCK = 32768
_CHUNK_HEADER = 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


@dataclass(frozen=True)
class WandbRun:
    """What one offline run logged.

    Attributes:
        path: the ``.wandb`` file.
        name, group, project: from the run record.
        config: top-level config keys -> values (nested dicts for config groups).
        summary: the last value of every summary key (``"val/acc"``; nested keys joined by ``/``).
        history: one row per logged step; columns are metric keys, ``_step`` among them.
    """

    path: Path
    name: str
    group: str
    project: str
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    history: pd.DataFrame = field(default_factory=pd.DataFrame)


def find_wandb_files(run_dir: str | Path) -> Iterator[Path]:
    """The offline ``.wandb`` files under ``run_dir/wandb``, oldest first."""
    yield from sorted(Path(run_dir).glob("wandb/offline-run-*/run-*.wandb"))


def wandb_records(path: str | Path) -> list[bytes]:
    """The serialized records of a ``.wandb`` file, in order.

    Raises:
        ValueError: naming the file when it is not a W&B run file.
    """
    path = Path(path)
    data = path.read_bytes()
    if not data.startswith(_HEADER) or len(data) < _CHUNK_HEADER:
        raise ValueError(f"{path}: not a W&B run file (expected a header starting with ':W&B')")
    records: list[bytes] = []
    pos, pending = _CHUNK_HEADER, b""
    while pos + _CHUNK_HEADER <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _CHUNK_HEADER:  # block trailer too short for a chunk: zero padding
            pos += left
            continue
        length = int.from_bytes(data[pos + 4 : pos + 6], "little")
        kind = data[pos + 6]
        payload = data[pos + _CHUNK_HEADER : pos + _CHUNK_HEADER + length]
        pos += _CHUNK_HEADER + length
        if kind == 0 and length == 0:  # preallocated zeros at the end of an unfinished file
            break
        pending = payload if kind in (_FULL, _FIRST) else pending + payload
        if kind in (_FULL, _LAST):
            records.append(pending)
            pending = b""
    return records


def _key(item: Any) -> str:
    return item.key or "/".join(item.nested_key)


def _value(item: Any) -> Any:
    try:
        return json.loads(item.value_json)
    except json.JSONDecodeError:
        return item.value_json


def read_wandb_run(path: str | Path) -> WandbRun:
    """Decode one offline run file into its config, summary and history.

    Raises:
        ValueError: naming the file when it is not a W&B run file.
    """
    from wandb.proto import wandb_internal_pb2  # heavy import, only when a run is read

    path = Path(path)
    meta = {"name": path.parent.name, "group": "", "project": ""}
    config: dict[str, Any] = {}
    summary: dict[str, Any] = {}
    history: list[dict[str, Any]] = []
    for raw in wandb_records(path):
        record = wandb_internal_pb2.Record()  # type: ignore[attr-defined]
        record.ParseFromString(raw)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            meta = {
                "name": record.run.display_name or meta["name"],
                "group": record.run.run_group,
                "project": record.run.project,
            }
            # wandb.init(config=...) arrives here; later updates come as config records
            config.update({item.key: _value(item) for item in record.run.config.update})
        elif kind == "config":
            config.update({item.key: _value(item) for item in record.config.update if item.key})
        elif kind == "summary":
            summary.update({_key(item): _value(item) for item in record.summary.update})
        elif kind == "history":
            history.append({_key(item): _value(item) for item in record.history.item})
    config.pop("_wandb", None)
    summary = {k: v for k, v in summary.items() if not k.startswith("_wandb")}
    return WandbRun(path, config=config, summary=summary, history=pd.DataFrame(history), **meta)
