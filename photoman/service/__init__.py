"""The watch daemon (single writer, warm model) and the Unix-socket protocol its clients speak."""
