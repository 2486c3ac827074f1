"""The catalog: what photoman knows about each file, in any SQLAlchemy database (SQLite by default)."""

from photoman.catalog.db import Catalog
from photoman.catalog.models import Base, Photo, Root, Tag

__all__ = ["Base", "Catalog", "Photo", "Root", "Tag"]
