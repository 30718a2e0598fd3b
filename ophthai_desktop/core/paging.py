"""Bounded paging shared by every list operation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.orm import QueryableAttribute, Session
from sqlalchemy.sql.expression import ColumnElement

from ophthai_desktop.core.errors import InvalidInput
from ophthai_desktop.core.records import Page

Record = TypeVar("Record")

MAX_LIMIT = 500


@dataclass(frozen=True)
class After:
    """The last row a reader holds, by the value it is sorted by and its id: the next
    page starts after it (keyset paging). Pages by position (``skip``) shift as rows
    come and go between two reads: a row deleted meanwhile made the next page skip
    one, a row created made it repeat one."""

    value: Any
    id: int | str


def rows_after(
    key: ColumnElement[Any] | QueryableAttribute[Any],
    row_id: ColumnElement[Any] | QueryableAttribute[Any],
    after: After,
    *,
    descending: bool,
    nulls_last: bool = False,
) -> ColumnElement[bool]:
    """The rows that ``ORDER BY key, row_id`` (both descending or both ascending, rows
    without a ``key`` last where ``nulls_last``) puts after ``after``. ``after.value``
    may be an SQL expression (the value put through the key's own function)."""
    beyond_id = row_id < after.id if descending else row_id > after.id
    if after.value is None:  # among those without a key: only they follow, by id
        return and_(key.is_(None), beyond_id)
    beyond = key < after.value if descending else key > after.value
    following = or_(beyond, and_(key == after.value, beyond_id))
    return or_(following, key.is_(None)) if nulls_last else following


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
    after: ColumnElement[bool] | None = None,
) -> Page[Record]:
    """One page of ``query`` in ``order_by`` order, with the total count of matches;
    with ``after`` (:func:`rows_after`), of the rows it lets through (``skip`` counting
    from the first of them), the total still counting every match."""
    check_paging(skip, limit)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    if after is not None:
        query = query.where(after)
    rows = session.scalars(query.order_by(*order_by).offset(skip).limit(limit)).all()
    return Page(tuple(convert(row) for row in rows), total, skip, limit)
