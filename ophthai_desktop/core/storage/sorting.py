"""Sort expressions that read the same on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import Integer, String, literal
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import QueryableAttribute
from sqlalchemy.sql.expression import ColumnElement
from sqlalchemy.sql.functions import FunctionElement


class in_byte_order(FunctionElement[str]):
    """A text column to sort or compare as SQLite does, byte by byte (code point order):
    ``x COLLATE "C"`` on PostgreSQL, whose own order is the database's locale (in
    ``en_US.UTF-8`` ``p2`` comes between ``P1`` and ``P3``), the column as it is on SQLite.
    Ids and statuses sort, and ties break, alike on both databases."""

    type = String()
    inherit_cache = True
    name = "in_byte_order"

    def __init__(self, column: ColumnElement[Any] | QueryableAttribute[Any]) -> None:
        super().__init__(column)


@compiles(in_byte_order)
def _collate_c(element: in_byte_order, compiler: Any, **kw: Any) -> str:
    return f'({compiler.process(element.clauses, **kw)} COLLATE "C")'


@compiles(in_byte_order, "sqlite")
def _as_it_is(element: in_byte_order, compiler: Any, **kw: Any) -> str:
    return f"({compiler.process(element.clauses, **kw)})"


class case_insensitive(FunctionElement[str]):
    """A short text column to sort or match (``LIKE`` a lower-case pattern) by
    ignoring the case of ASCII letters, then in byte order: ``x COLLATE NOCASE`` on
    SQLite, where the connection's ``lower()`` is a Python call per row (about 5 ms
    more per 10,000 rows) and NOCASE folds ASCII natively; ``lower(x COLLATE "C")`` on
    PostgreSQL, which folds ASCII alone too (``lower(x)`` would fold ``É`` to ``é`` there,
    as SQLite does not, and sort in the database's locale). For values such as a sex;
    names have a stored key instead (``Patient.name_key``)."""

    type = String()
    inherit_cache = True
    name = "case_insensitive"

    def __init__(self, column: ColumnElement[Any] | QueryableAttribute[Any]) -> None:
        super().__init__(column)


@compiles(case_insensitive)
def _lower(element: case_insensitive, compiler: Any, **kw: Any) -> str:
    return f'lower(({compiler.process(element.clauses, **kw)}) COLLATE "C")'


@compiles(case_insensitive, "sqlite")
def _nocase(element: case_insensitive, compiler: Any, **kw: Any) -> str:
    return f"({compiler.process(element.clauses, **kw)} COLLATE NOCASE)"


class age_in_years(FunctionElement[int]):
    """A patient's age on ``today``: from the birth date when there is one (the stored
    age is as of the record's last change), else the stored age. Sorting by it is the
    order of the ages shown."""

    type = Integer()
    inherit_cache = True
    name = "age_in_years"

    def __init__(
        self,
        birth_date: ColumnElement[Any] | QueryableAttribute[Any],
        age: ColumnElement[Any] | QueryableAttribute[Any],
        today: date,
    ) -> None:
        super().__init__(birth_date, age, literal(today.isoformat(), String()))


@compiles(age_in_years)
def _age_postgresql(element: age_in_years, compiler: Any, **kw: Any) -> str:
    born, age, today = (compiler.process(c, **kw) for c in element.clauses)
    return (
        f"CASE WHEN {born} IS NULL THEN {age} "
        # age() of two timestamps without a zone: dates alone would be taken as
        # timestamptz, and a daylight-saving change at midnight could cost a year on
        # the birthday itself.
        f"ELSE CAST(date_part('year', age(CAST({today} AS timestamp), "
        f"CAST({born} AS timestamp))) AS INTEGER) END"
    )


@compiles(age_in_years, "sqlite")
def _age_sqlite(element: age_in_years, compiler: Any, **kw: Any) -> str:
    born, age, today = (compiler.process(c, **kw) for c in element.clauses)
    # Dates are stored as 'YYYY-MM-DD' text: whole years, less one before the birthday.
    return (
        f"CASE WHEN {born} IS NULL THEN {age} "
        f"ELSE CAST(substr({today}, 1, 4) AS INTEGER) - CAST(substr({born}, 1, 4) AS INTEGER)"
        f" - (substr({today}, 6, 5) < substr({born}, 6, 5)) END"
    )
