"""Keep secrets out of what a run writes and prints: the W&B key and HF token from the
environment, config keys such as ``hf_token`` or ``api_key``, and anything shaped like a Hugging
Face token.

Light on purpose (no torch, no Lightning): Hydra imports :class:`ScrubSecrets` at the start of
every command line (``hydra.callbacks`` in ``conf/hydra/default.yaml``).
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

SECRET_ENV = ("WANDB_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
REDACTED = "***"
_SECRET_KEY = re.compile(
    r"(?:^|_)(?:(?:api|access|secret)_?key|secret|password|passwd|credentials?)$"
    r"|^(?:hf_|hub_|auth_|access_|api_|wandb_|use_auth_)?token$"
)
_HF_TOKEN = re.compile(r"\bhf_[A-Za-z0-9]{30,}")
_OVERRIDE = re.compile(r"^[~+]*([\w.@/-]+)=(.*)$", re.S)
# the loggers that print each multirun job's overrides ("#0 : seed=1 +hf_token=...")
LAUNCHER_LOGGERS = (
    "hydra._internal.core_plugins.basic_launcher",
    "hydra_plugins.hydra_joblib_launcher._core",
    "hydra_plugins.hydra_submitit_launcher.submitit_launcher",
)


def is_secret_key(key: object) -> bool:
    """True for config keys that hold credentials (``hf_token``, ``api_key``, ``password``),
    not for look-alikes such as ``pad_token`` or ``max_tokens``."""
    return isinstance(key, str) and _SECRET_KEY.search(key.lower()) is not None


def _override(text: str) -> tuple[str, str] | None:
    """(key, value) of a ``key=value`` command-line override, else None."""
    match = _OVERRIDE.match(text)
    return (match.group(1).rsplit(".", 1)[-1], match.group(2)) if match else None


def find_secrets(data: Any) -> set[str]:
    """Secret strings in ``data`` and the environment: the values of :data:`SECRET_ENV`, of
    secret-named keys (:func:`is_secret_key`), of secret-named ``key=value`` overrides and
    anything shaped like a Hugging Face token. Strings shorter than 8 characters are left out:
    replacing them everywhere would garble the rest."""
    found = {v for k in SECRET_ENV if (v := os.environ.get(k))}
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if is_secret_key(key) and _is_scalar(value):
                    found.add(str(value))
                else:
                    stack.append(value)
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, str):
            found.update(_HF_TOKEN.findall(item))
            if (pair := _override(item)) and is_secret_key(pair[0]) and pair[1]:
                found.add(pair[1])
    return {s for s in found if len(s) >= 8}


def _is_scalar(value: object) -> bool:
    return isinstance(value, (str, int, float)) and not isinstance(value, bool) and value != ""


def scrub(data: Any, secrets: set[str] | None = None) -> Any:
    """A copy of ``data`` (dicts, lists, strings) with every secret replaced by ``***``.

    Args:
        data: a config container, a summary or a list of override strings.
        secrets: the strings to hide; default :func:`find_secrets` of ``data``.
    """
    ordered = sorted(find_secrets(data) if secrets is None else secrets, key=len, reverse=True)
    return _redact(data, ordered)


def _redact(data: Any, secrets: list[str]) -> Any:
    if isinstance(data, dict):
        return {
            k: REDACTED if is_secret_key(k) and _is_scalar(v) else _redact(v, secrets)
            for k, v in data.items()
        }
    if isinstance(data, (list, tuple)):
        return [_redact(v, secrets) for v in data]
    if isinstance(data, str):
        for secret in secrets:
            data = data.replace(secret, REDACTED)
    return data


@contextmanager
def scrubbed_argv() -> Iterator[None]:
    """``sys.argv`` without secrets for the duration (W&B records the command line)."""
    saved = list(sys.argv)
    sys.argv[:] = scrub(saved)
    try:
        yield
    finally:
        sys.argv[:] = saved


def scrub_files(paths: list[Path]) -> list[Path]:
    """Rewrite YAML files (Hydra's ``.hydra/*.yaml``, ``multirun.yaml``) without secrets.

    Secrets are collected over all files together, so a token given as an override is also
    hidden inside ``hydra.job.override_dirname``. Returns the files that changed.
    """
    loaded = {p: OmegaConf.to_container(OmegaConf.load(p)) for p in paths if p.is_file()}
    secrets = find_secrets(list(loaded.values()))
    changed = []
    for path, data in loaded.items():
        clean = _redact(data, sorted(secrets, key=len, reverse=True))
        if clean != data:
            OmegaConf.save(OmegaConf.create(clean), path)
            changed.append(path)
    return changed


class ScrubLogFilter(logging.Filter):
    """Replace secrets in log messages: ``secrets`` and those :func:`find_secrets` sees in the
    message's words (``key=value`` overrides, token shapes, the environment's values)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = set(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        found = self.secrets | find_secrets(message.split())
        clean = scrub(message, found)
        if clean != message:
            record.msg, record.args = clean, ()
        return True


def filter_launcher_logs(secrets: set[str]) -> None:
    """Hide ``secrets`` (and any that show up) in the job lines of :data:`LAUNCHER_LOGGERS`."""
    for name in LAUNCHER_LOGGERS:
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, ScrubLogFilter)]:
            logger.removeFilter(old)
        logger.addFilter(ScrubLogFilter(secrets))


class ScrubSecrets(Callback):
    """Hydra callback: scrub the config files Hydra wrote for this job before the job runs, the
    multirun launcher's job lines and the overrides of Hydra's job-failure header
    (``hydra.callbacks`` in ``conf/hydra/default.yaml``)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        filter_launcher_logs(find_secrets(list(config.hydra.overrides.task)))

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        # a failed job's return_value writes "Error executing job with overrides: [...]"
        if job_return.overrides is not None:
            job_return.overrides = scrub(list(job_return.overrides))

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        hydra_cfg = config.hydra
        paths: list[Path] = []
        if hydra_cfg.output_subdir is not None:
            paths += sorted(
                (Path(hydra_cfg.runtime.output_dir) / hydra_cfg.output_subdir).glob("*.yaml")
            )
        if hydra_cfg.mode == RunMode.MULTIRUN:
            paths.append(Path(hydra_cfg.sweep.dir) / "multirun.yaml")
        for path in scrub_files(paths):
            log.info("removed secrets from %s", path)
