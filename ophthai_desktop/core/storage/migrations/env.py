"""Alembic environment: runs on the connection the application hands over.

``Database.upgrade`` passes its connection in ``config.attributes["connection"]``; the
command line (``alembic -x url=...``) is supported for development.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from ophthai_desktop.core.storage.models import Base, compared_with_models

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            include_object=compared_with_models,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    url = context.get_x_argument(as_dictionary=True).get("url")
    if not url:
        raise SystemExit("pass the database with: alembic -x url=<sqlalchemy url> ...")
    engine = create_engine(url)
    with engine.connect() as conn:
        context.configure(
            connection=conn,
            target_metadata=target_metadata,
            include_object=compared_with_models,
            render_as_batch=conn.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
