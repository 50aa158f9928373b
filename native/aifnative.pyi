"""aif_gateway._native: the C data path. aif_gateway.fsio.pyengine is its pure-Python twin and
keeps the same signatures and results; see aif_gateway.fsio.engine for which one runs."""

from collections.abc import Iterable

ReadableBuffer = bytes | bytearray | memoryview | AlignedBuffer
WritableBuffer = bytearray | memoryview | AlignedBuffer

class Hasher:
    """MD5 always, plus any of CRC32, CRC32C, CRC64NVME, SHA1, SHA256, XXH3_64 (ValueError for
    others). Safe to share between threads: updates are serialised by the hasher's own lock."""

    def __init__(self, algorithms: Iterable[str]) -> None: ...
    def update(self, data: ReadableBuffer, /) -> None: ...
    def digests(self) -> dict[str, bytes]:
        """Raw digests of everything fed so far (updating may continue); CRCs and XXH3_64 as
        big-endian integers of 4 or 8 bytes, as S3 base64-encodes them."""

class AlignedBuffer:
    """Zeroed, writable memory at an aligned address; use through memoryview()."""

    def __len__(self) -> int: ...

def write_hashed(fd: int, buffer: ReadableBuffer, offset: int, hasher: Hasher, /) -> int:
    """pwrite all of buffer at offset while feeding it to hasher; returns len(buffer). On OSError
    the hasher may have seen bytes that are not on disk: discard both."""

def pwrite_striped(fd: int, buffer: ReadableBuffer, offset: int, stripe_size: int, threads: int, /) -> int:
    """Write buffer at offset as stripe-aligned pieces (boundaries at multiples of stripe_size in
    the file), up to threads (at most 64) at once; returns len(buffer). The first error is raised."""

def pread_striped(fd: int, buffer: WritableBuffer, offset: int, stripe_size: int, threads: int, /) -> int:
    """Fill buffer from offset as stripe-aligned pieces in parallel; returns the bytes read before
    the end of the file (bytes past it are left as they were)."""

def copy_range(src_fd: int, dst_fd: int, src_offset: int, dst_offset: int, length: int, /) -> int:
    """copy_file_range, falling back to pread/pwrite where the kernel cannot copy (EXDEV, EINVAL,
    ENOSYS, EOPNOTSUPP, EBADF); returns the bytes copied, fewer than length at the source's end."""

def reflink(src_fd: int, dst_fd: int, /) -> bool:
    """FICLONE: dst shares src's extents. False where the filesystem cannot; OSError otherwise."""

def fallocate(fd: int, offset: int, length: int, /) -> None:
    """posix_fallocate: reserve blocks so later writes cannot fail for space."""

def aligned_buffer(size: int, alignment: int = 4096) -> AlignedBuffer:
    """Zeroed memory whose address is a multiple of alignment (a power of two), for O_DIRECT."""

def engine_info() -> dict[str, str]:
    """Which implementation does what, e.g. {"engine": "native", "crc32c": "sse4.2", ...}."""
