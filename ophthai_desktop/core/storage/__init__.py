"""Persistence: the database, its schema and migrations, and the image store."""

from ophthai_desktop.core.storage.database import Database
from ophthai_desktop.core.storage.images import ImageStore, StoredImage

__all__ = ["Database", "ImageStore", "StoredImage"]
