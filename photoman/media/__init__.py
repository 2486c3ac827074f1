"""Reading photo files: hashing, fast decoding, EXIF metadata. No torch here (runs in worker processes)."""
