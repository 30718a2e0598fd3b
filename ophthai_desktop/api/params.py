"""Query and path parameters that several routes share, with their bounds.

A number past what the database stores (a signed 64-bit integer) is refused here with
a 422 naming the parameter, rather than reaching SQLite, which cannot bind it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

from ophthai_desktop.core.paging import MAX_LIMIT

#: The largest whole number SQLite and PostgreSQL store (a signed 64-bit integer).
DB_INT_MAX = 2**63 - 1

Skip = Annotated[int, Query(ge=0, le=DB_INT_MAX, description="How many records to skip")]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"Page size (1-{MAX_LIMIT})")]
#: A numeric record id in the path (a notification, a job, an analysis, a scan).
RecordId = Annotated[int, Path(ge=0, le=DB_INT_MAX)]
