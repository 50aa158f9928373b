"""Which engine runs: the tests must exercise the C code, and AIF_ENGINE must choose."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

from aif_gateway import _native
from aif_gateway.fsio import engine, pyengine


def _contract_names() -> list[str]:
    """What aif_gateway/_native.pyi, the contract of both engines, declares at its top level."""
    tree = ast.parse((Path(_native.__file__).parent / "_native.pyi").read_text())
    names = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
    return names


PUBLIC = _contract_names()


def test_the_contract_declares_the_engines_parts():
    assert {"Hasher", "write_hashed", "stat_entries", "open_beneath", "RESOLVE_BENEATH"} <= set(PUBLIC)


def _engine_in_child(value: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "AIF_ENGINE"}
    if value is not None:
        env["AIF_ENGINE"] = value
    return subprocess.run(
        [sys.executable, "-c", "from aif_gateway.fsio import engine; print(engine.ENGINE)"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_tests_run_the_native_engine():
    # If this fails, the C extension did not build: `pip install -v -e .` shows why.
    if os.environ.get("AIF_ENGINE", "auto") != "python":
        assert engine.ENGINE == "native"
        assert engine.Hasher is _native.Hasher
        assert engine.write_hashed is _native.write_hashed


def test_auto_prefers_native():
    assert _engine_in_child(None).stdout.strip() == "native"
    assert _engine_in_child("auto").stdout.strip() == "native"
    assert _engine_in_child("native").stdout.strip() == "native"


def test_python_forces_the_python_version():
    assert _engine_in_child("python").stdout.strip() == "python"


def test_an_unknown_engine_is_an_error():
    child = _engine_in_child("fast")
    assert child.returncode != 0
    assert "AIF_ENGINE must be" in child.stderr


# A type that only annotates results: the Python version's aligned buffers are plain memoryviews.
RESULT_TYPES = {"AlignedBuffer"}


def test_both_engines_offer_what_the_contract_declares_and_the_engine_exports_it():
    for name in PUBLIC:
        if name in RESULT_TYPES:
            continue
        native, python = getattr(_native, name), getattr(pyengine, name)
        if name.isupper():  # constants
            assert native == python == getattr(engine, name), name
        else:
            assert callable(native) and callable(python), name
            assert getattr(engine, name) in (native, python), name


def test_engine_info_names_every_part():
    native, python = _native.engine_info(), pyengine.engine_info()
    assert native.keys() == python.keys() == {"engine", "crc32c", "crc64nvme", "crc32", "md5", "xxh3", "openat2"}
    assert native["engine"] == "native" and python["engine"] == "python"
    assert native["crc32c"] in ("sse4.2", "table")


def test_crc_table_kernels_match_the_simd_ones():
    """The table kernels (zlib's for CRC32) are the Python fallbacks of SSE4.2 (CRC32C) and PCLMULQDQ
    (CRC32, CRC64NVME); only a forced run exercises them on a machine that has both."""
    script = (
        "import random; from aif_gateway import _native\n"
        "rng = random.Random(1); data = rng.randbytes(1 << 20)\n"
        "h = _native.Hasher(['CRC32', 'CRC32C', 'CRC64NVME'])\n"
        "for n in (0, 1, 7, 8, 15, 16, 63, 64, 65, 79, 80, 127, 128, 4095, 65537, 1 << 20):\n"
        "    h.update(memoryview(data)[rng.randrange(8):][:n])\n"
        "info = _native.engine_info(); d = h.digests()\n"
        "print(info['crc32c'], info['crc64nvme'], info['crc32'].split()[0], d['CRC32'].hex(),\n"
        "      d['CRC32C'].hex(), d['CRC64NVME'].hex())\n"
    )
    runs = {}
    for kernel in ("table", "auto"):
        env = {**os.environ, "AIF_NATIVE_CRC": kernel}
        out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
        runs[kernel] = out.stdout.split()
    assert runs["table"][:3] == ["table", "slicing-by-8", "zlib"]
    assert runs["table"][3:] == runs["auto"][3:]


def test_the_engine_exports_the_contract_and_which_engine_runs():
    assert set(engine.__all__) == (set(PUBLIC) - RESULT_TYPES) | {"ENGINE"}
