"""The data path: how bytes move between sockets, memory and files.

- ``engine``: native (C extension, ``native/aifnative.c``) or pure-Python hashing, striped
  pread/pwrite, kernel-side copies, preallocation and aligned buffers; ``pyengine`` is the Python version.
- ``fsinfo``, ``layout``, ``lustre``, ``gpfs``, ``newfile``: which filesystem, and how to lay
  out and create files on it. ``zerocopy``: sending file ranges to sockets without copies.
- ``creds``: filesystem work done as a request's POSIX user, one thread at a time;
  ``dirdefaults``: what a file renamed into a directory takes from it (mode, setgid group,
  default ACL); ``reserve``: disk space reserved as bytes arrive.
"""
