"""Resumable dataset uploads (tus 1.0.0) and the sources a shard job reads.

store.py keeps the records and partial files, receive.py streams a PATCH body to disk and
checks the finished archive (core/archives.py), catalog.py lists and removes sources,
errors.py names the faults (mapped to HTTP in app/errors.py).
"""
