"""Alembic environment and revisions for the photoman catalog (a package so it ships in the wheel)."""
