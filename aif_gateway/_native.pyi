"""aif_gateway._native: the C data path. aif_gateway.fsio.pyengine is its pure-Python version and
keeps the same signatures and results; see aif_gateway.fsio.engine for which one runs."""

from collections.abc import Iterable, Sequence

class Hasher:
    """MD5 (unless md5=False), plus any of CRC32, CRC32C, CRC64NVME, SHA1, SHA256, XXH3_64
    (ValueError for others). Safe to share between threads: updates are serialised by the
    hasher's own lock."""

    def __init__(self, algorithms: Iterable[str], *, md5: bool = True) -> None: ...
    def update(self, data: ReadableBuffer, /) -> None: ...
    def digests(self) -> dict[str, bytes]:
        """Raw digests of everything fed so far (updating may continue); CRCs and XXH3_64 as
        big-endian integers of 4 or 8 bytes, as S3 base64-encodes them."""

class AlignedBuffer:
    """Zeroed, writable memory at an aligned address; use through memoryview()."""

    def __len__(self) -> int: ...

ReadableBuffer = bytes | bytearray | memoryview | AlignedBuffer
WritableBuffer = bytearray | memoryview | AlignedBuffer

def write_hashed(fd: int, buffer: ReadableBuffer, offset: int, hasher: Hasher, /) -> int:
    """pwrite all of buffer at offset while feeding it to hasher; returns len(buffer). On OSError
    the hasher may have seen bytes that are not on disk: discard both."""

def recv_hashed(
    sock_fd: int,
    file_fd: int,
    offset: int,
    count: int,
    hasher: Hasher,
    stall_timeout_ms: int,
    decoder: ChunkedDecoder | None = None,
    /,
) -> int:
    """Read exactly count bytes from a non-blocking socket (its flags untouched; EAGAIN waits in
    poll) and pwrite them, or with a decoder the aws-chunked data they decode to, at offset while
    feeding hasher; returns the bytes written. ConnectionResetError when the peer closes first,
    TimeoutError after stall_timeout_ms without a byte, ChunkedError for a refused body, OSError
    otherwise. On an error the file and hasher hold a prefix of the body: discard both. The
    decoder is not finished here: call its finish() after."""

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
    """Which implementation does what, e.g. {"engine": "native", "crc32c": "sse4.2", ...,
    "openat2": "yes"}; "openat2" is "walk" where open_beneath walks instead (read at each call)."""

class ChunkedError(ValueError):
    """A refused aws-chunked body. kind: "framing" (S3 InvalidRequest, message "Malformed
    aws-chunked body: ..."), "incomplete" (IncompleteBody), "signature" (SignatureDoesNotMatch)
    or "trailer" (InvalidRequest); message: the S3 message, as aif_gateway/s3/chunked.py words it."""

    kind: str
    message: str

class ChunkedDecoder:
    """Incremental, in-place decoder of one aws-chunked body (native/awschunked.h).

    signed: chunk signatures are checked (chained from seed_signature, with signing_key,
    amz_date and scope); with_trailers: trailers may follow the final chunk, exactly those in
    trailer_names (lower-cased here), plus x-amz-trailer-signature when signed. decoded_length:
    x-amz-decoded-content-length, or None. ChunkedError (kind "trailer") when trailer_names is
    not empty in a mode without trailers or names more than 8 trailers or one over 64 bytes;
    ValueError for a signing_key that is not 32 bytes or a seed that is not 64 characters in
    signed modes.

    Data is released before its chunk's signature is checked: write it to a temporary file and
    publish only once done is true and no call raised."""

    def __init__(
        self,
        signed: bool,
        with_trailers: bool,
        signing_key: bytes,
        amz_date: str,
        scope: str,
        seed_signature: str,
        decoded_length: int | None,
        trailer_names: Iterable[str],
    ) -> None: ...
    def decode(self, buffer: WritableBuffer, /) -> int:
        """Decode the next piece of the body (split anywhere) in place: its data bytes are moved
        to buffer[:n] and n is returned. ChunkedError when the body is refused; every later call
        raises it again. Lines (chunk headers, trailers) over 4096 bytes are refused."""
    def finish(self) -> None:
        """The body ended: ChunkedError unless it is complete. The closing empty line, or all of
        the trailers after the final chunk, may be missing (clients omit them)."""
    @property
    def done(self) -> bool:
        """The whole body arrived and every check passed (set by decode, or by finish)."""
    @property
    def received(self) -> int:
        """Data bytes decoded so far."""
    @property
    def trailers(self) -> dict[str, str]:
        """Trailers so far: lower-case name -> value (complete once done)."""

def stat_entries(
    directory: str, names: Sequence[str], xattr: str | None, /
) -> tuple[list[int], list[int], list[int], list[bytes | None]]:
    """native/listing.c; its Python version is aif_gateway.fsio.pylisting.stat_entries. For each name,
    lstat of directory/name (0, 0, 0 when it or the directory is gone) and, for a regular file,
    the value of xattr (None when absent or unreadable): (modes, sizes, mtimes_ns, values), with
    the GIL released for the whole batch. Other errors raise OSError."""

def copy_small_files(
    sources: Sequence[str], dests: Sequence[str], sizes: Sequence[int], mtimes_ns: Sequence[int], /
) -> tuple[list[int], list[int], tuple[int, int, str] | None]:
    """native/stagecopy.c; its Python version is aif_gateway.fsio.pysmallcopy.copy_small_files. Copy each
    small file in order until the first failure, checking it against its listed size and mtime:
    (xxh3s, dest_mtimes_ns, failure), failure None or (index, errno, step); the GIL released."""

# Per-thread credentials and opens beneath a directory: native/posixcreds.c; its Python version is
# aif_gateway.fsio.pyposixcreds (through aif_gateway.fsio.pyengine).

def set_thread_creds(uid: int, gid: int, groups: Iterable[int], /) -> None:
    """On the calling thread only: supplementary groups (raw SYS_setgroups; glibc's setgroups
    changes every thread), then fsgid, then fsuid; each id read back. Ids are 0..4294967294
    (ValueError otherwise). OSError (PermissionError without CAP_SETUID/CAP_SETGID) when any step
    fails, and then the thread is back on the process's credentials, as after
    restore_thread_creds: never half switched. An fsuid other than 0 drops the thread's
    filesystem capabilities (CAP_DAC_OVERRIDE, CAP_FOWNER...); file access is then checked as
    for that user. Setting the groups the thread already holds needs no privilege."""

def restore_thread_creds() -> None:
    """This thread back to the process's effective uid and gid and the supplementary groups the
    process had when the module was imported."""

def thread_creds() -> tuple[int, int, tuple[int, ...]]:
    """This thread's (fsuid, fsgid, supplementary groups), read from the kernel; the kernel keeps
    the groups sorted."""

RESOLVE_NO_XDEV: int
RESOLVE_NO_MAGICLINKS: int
RESOLVE_NO_SYMLINKS: int
RESOLVE_BENEATH: int

def open_beneath(
    dir_fd: int,
    path: str | bytes,
    flags: int,
    mode: int = 0o666,
    resolve: int = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
) -> int:
    """openat2(dir_fd, path, {flags | O_CLOEXEC, mode, resolve}) with the GIL released; the new
    fd. mode is 0..0o7777 and resolve takes the four RESOLVE_* flags above (ValueError otherwise).

    Where the kernel lacks openat2 (found when the module is imported), or when the environment
    holds AIF_OPENAT2=0 (read at each call), a component walk instead, stricter than openat2:
    it always stays beneath dir_fd and refuses every symlink, as RESOLVE_NO_SYMLINKS does, even
    where resolve allows those that stay beneath; it refuses ".." components (EXDEV) even where
    they would stay beneath. RESOLVE_NO_XDEV compares st_dev there (a bind mount of the same
    filesystem passes).

    Errors are OSError with the path as filename: EXDEV for an absolute path or an escape
    ("..", or with openat2 a symlink leading out), ELOOP for a refused symlink (a magic link
    under RESOLVE_NO_MAGICLINKS; any symlink under RESOLVE_NO_SYMLINKS and in the walk), ENOENT
    for an empty path, as open(2) says; the rest as open(2)."""
