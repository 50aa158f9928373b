"""The copy engine behind ``stage in`` (and ``stage out`` to a path): plan the units of work
(plan.py), copy them in parallel (transfer.py; local files by local_copy.py over fscopy.py and
fsio's copy_small_files, S3 objects by s3_copy.py over s3get.py), verify each file (verify.py)."""
