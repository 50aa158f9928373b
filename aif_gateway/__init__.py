"""aif-gateway: an S3-compatible gateway over POSIX and parallel filesystems."""

__all__ = ["__version__"]

__version__ = "0.1.0"
