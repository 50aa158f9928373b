"""Data staging: copy datasets in (S3 or a filesystem tree -> a directory) and results out, in
parallel, resumable, verified, with an atomic completion marker. The CLI is ``aif-gateway stage``
(stage/cli/); this package is also the library that the site cache and the Slurm hooks use.

Its parts: ``sources/`` (what to copy: the user's sources listed into files), ``engine/`` (how:
plan, copy in parallel, verify), ``state/`` (what a stage keeps under ``DEST/.aifstage``: lock,
journal, manifest and completion marker), ``out/`` (stage out to S3), ``cache.py`` (the site
cache), ``cli/``; shared by them: ``options.py``, ``errors.py`` (``StageError``: kind, path,
message, exit_code), ``progress.py`` (bar, log lines, ``Report``) and ``client_failures.py`` (S3
client failures as stage errors; the S3 client itself is ``aif_gateway.client``).
"""

from __future__ import annotations

from ..lazy_exports import lazy_exports

# Names load on first use (PEP 562), so ``aif-gateway serve`` and the CLI's parser do not
# import aiobotocore.
_HOMES = {
    "StageError": "errors",
    "stage_status": "state.completion",
    "StageOptions": "options",
    "parse_size": "options",
    "Report": "progress",
    "Entry": "sources",
    "alist_sources": "sources",
    "fingerprint": "sources",
    "list_sources": "sources",
    "stage_in": "engine.transfer",
    "stage_out": "out.upload",
}
__all__ = sorted(_HOMES)  # noqa: PLE0605 (the names load on first use, from _HOMES)

__getattr__, _ = lazy_exports(__name__, _HOMES)
