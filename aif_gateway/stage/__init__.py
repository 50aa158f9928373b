"""Data staging: copy datasets in (S3 or a filesystem tree -> a directory) and results out, in
parallel, resumable, verified, with an atomic completion marker. The CLI is ``aif-gateway stage``
(stage/cli.py); this package is also the library that the site cache and the Slurm hooks use.

Public API
- ``StageOptions`` (options.py), ``parse_size``.
- ``Entry``, ``list_sources(specs, options) -> list[Entry]``, ``alist_sources`` (its coroutine),
  ``fingerprint(entries) -> str`` (sources.py).
- ``async stage_in(specs, dest, options, *, entries=None) -> Report`` (transfer.py);
  ``async stage_out(src, dest, options) -> Report`` (upload.py: ``s3://`` or a path).
- ``stage_status(dest) -> dict | None``: the completion marker of a complete, intact stage.
- ``Report`` (progress.py), ``StageError`` (errors.py: kind, path, message, exit_code).

Modules: sources (what), plan (how to cut it), transfer (the engine), fscopy (its blocking
filesystem work; smallcopy: batches of small files, in C), s3get (its S3 reads, through
``aif_gateway.client``; s3_failures: its errors as stage errors), journal (resume),
verify (what a copy is checked against), manifest + statedir (what a finished stage leaves),
upload (stage out to S3; uploadstate: what an interrupted multipart upload resumes from),
progress (bar, log lines, report), cli (the command line; cache + cache_cli: the site cache).
"""

from __future__ import annotations

import importlib
from typing import Any

# Names load on first use (PEP 562), so ``aif-gateway serve`` and the CLI's parser do not
# import aiobotocore.
_HOMES = {
    "StageError": "errors", "stage_status": "manifest", "StageOptions": "options", "parse_size": "options",
    "Report": "progress", "Entry": "sources", "alist_sources": "sources", "fingerprint": "sources",
    "list_sources": "sources", "stage_in": "transfer", "stage_out": "upload",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    globals()[name] = value
    return value
