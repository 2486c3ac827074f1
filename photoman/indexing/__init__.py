"""Scanning library roots and turning files into catalog rows and vectors."""
