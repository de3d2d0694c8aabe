"""``python -m arena.bench [key=value ...]``: run the benchmark suite, write JSON, print a table.

Keys: ``output`` (default ``bench.json``), ``quick`` (true/false), ``only`` (comma-separated
sections), ``backbone`` (minilm|tiny), ``seed``, ``repeats``, ``max_length``,
``batching_max_length``, ``data_dir``, ``work_dir``, ``threads`` (torch threads; default 1,
0 = torch's default), ``tta_file``.
Example::

    python -m arena.bench quick=true only=tokenization,tta output=/tmp/bench.json
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from arena.bench.common import Settings
from arena.bench.report import table
from arena.bench.suite import SECTIONS, run_suite
from arena.utils.io import write_json

_TYPES: dict[str, Any] = {
    "quick": lambda v: v.lower() in ("1", "true", "yes"),
    "backbone": str,
    "seed": int,
    "repeats": int,
    "max_length": int,
    "batching_max_length": int,
    "data_dir": Path,
    "work_dir": Path,
    "lr": float,
    "threads": int,
}


def parse(argv: list[str]) -> tuple[Settings, dict[str, Any]]:
    """``key=value`` arguments -> settings and the CLI-only options (output, only, tta_file)."""
    values: dict[str, Any] = {}
    options: dict[str, Any] = {"output": Path("bench.json"), "only": None, "tta_file": None}
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep:
            raise SystemExit(f"expected key=value, got {arg!r}; keys: {[*_TYPES, *options]}")
        if key in _TYPES:
            values[key] = _TYPES[key](value)
        elif key == "only":
            options["only"] = [s for s in value.split(",") if s]
        elif key in ("output", "tta_file"):
            options[key] = Path(value)
        else:
            raise SystemExit(f"unknown key {key!r}; keys: {[*_TYPES, *options]}")
    if values.get("repeats", 3) < 3:
        raise SystemExit("repeats must be at least 3 (interleaved comparisons need them)")
    return Settings(**values), options


def quiet() -> None:
    """Keep library banners and progress bars off the table."""
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)


def main(argv: list[str]) -> None:
    settings, options = parse(argv)
    only = options["only"]
    if only and set(only) - set(SECTIONS):
        raise SystemExit(f"unknown sections {sorted(set(only) - set(SECTIONS))}; {SECTIONS}")
    quiet()
    result = run_suite(settings, only, options["tta_file"])
    write_json(options["output"], result)
    print(table(result))
    print(f"wrote {options['output']}")


if __name__ == "__main__":
    main(sys.argv[1:])
