"""The storage layer: buckets and objects as directories and files on a POSIX tree, published
atomically, with metadata, multipart uploads and cross-node locks kept beside them; it knows
nothing of HTTP."""
