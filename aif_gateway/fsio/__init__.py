"""The data path: how bytes move between sockets, memory and files.

- ``engine``: native (C extension, ``native/aifnative.c``) or pure-Python hashing, striped
  pread/pwrite, kernel-side copies, preallocation and aligned buffers; ``pyengine`` is the twin.
- ``fsinfo``, ``layout``, ``lustre``, ``gpfs``, ``newfile``: which filesystem, and how to lay
  out and create files on it. ``zerocopy``: sending file ranges to sockets without copies.
"""
