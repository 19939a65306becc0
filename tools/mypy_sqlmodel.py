"""A mypy plugin for SQLModel tables: what the ORM makes of their attributes.

- ``Model.field`` on a table class is a column expression (SQLAlchemy's ``InstrumentedAttribute``),
  not the Python value its annotation names; it is typed ``Any`` so that ``Model.field == x``,
  ``Model.field.in_(...)`` and ``order_by(Model.field)`` are not reported.
- ``row.id`` of a stored row is its integer key (annotated ``int | None`` only so that a new row
  can be built without one); it is typed ``int``.

Attribute names are still checked: a misspelt field is an error, as is passing ``row.id`` where
a string is expected.
"""

from __future__ import annotations

from collections.abc import Callable

from mypy.nodes import TypeInfo
from mypy.plugin import AttributeContext, Plugin
from mypy.types import AnyType, NoneType, Type, TypeOfAny, UnionType, get_proper_type

SQLMODEL = "sqlmodel.main.SQLModel"


class SQLModelPlugin(Plugin):
    def _model(self, fullname: str) -> bool:
        owner = self.lookup_fully_qualified(fullname.rpartition(".")[0])
        info = owner.node if owner is not None else None
        return isinstance(info, TypeInfo) and any(base.fullname == SQLMODEL for base in info.mro[1:])

    def get_class_attribute_hook(self, fullname: str) -> Callable[[AttributeContext], Type] | None:
        return _column if self._model(fullname) else None

    def get_attribute_hook(self, fullname: str) -> Callable[[AttributeContext], Type] | None:
        return _stored_key if fullname.endswith(".id") and self._model(fullname) else None


def _column(ctx: AttributeContext) -> Type:
    return AnyType(TypeOfAny.special_form)


def _stored_key(ctx: AttributeContext) -> Type:
    t = get_proper_type(ctx.default_attr_type)
    if isinstance(t, UnionType):
        return UnionType.make_union([i for i in t.items if not isinstance(get_proper_type(i), NoneType)])
    return t


def plugin(version: str) -> type[Plugin]:
    return SQLModelPlugin
