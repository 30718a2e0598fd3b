"""Framework-free core: domain, storage, services, inference and watcher.

Nothing under this package imports PySide6, FastAPI, Starlette or uvicorn; a test and
the import-linter contract in ``pyproject.toml`` enforce it.
"""
