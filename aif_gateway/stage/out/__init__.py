"""``stage out`` to S3: changed files uploaded, large ones as resumable multipart uploads
(upload.py; upload_state.py: what an interrupted upload resumes from)."""
