"""Bounded paging shared by every list operation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from ophthai_desktop.core.errors import InvalidInput
from ophthai_desktop.core.records import Page

Record = TypeVar("Record")

MAX_LIMIT = 500


def check_paging(skip: int, limit: int) -> None:
    """Refuse a page outside ``skip >= 0`` and ``1 <= limit <= MAX_LIMIT``."""
    if skip < 0:
        raise InvalidInput("skip must be 0 or more", field="skip")
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}", field="limit")


def fetch_page(
    session: Session,
    query: Select[Any],
    *,
    order_by: tuple[Any, ...],
    skip: int,
    limit: int,
    convert: Callable[[Any], Record],
) -> Page[Record]:
    """One page of ``query`` in ``order_by`` order, with the total count of matches."""
    check_paging(skip, limit)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(*order_by).offset(skip).limit(limit)).all()
    return Page(tuple(convert(row) for row in rows), total, skip, limit)
