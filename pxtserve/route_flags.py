"""The CLI's single-endpoint flags, generated from the route kinds' declarations.

`manage.py serve insert --table t --path /x --inputs a b ...`: every field of every
route kind is a flag (`--uploadfile-inputs`), a nested option's fields are flags with
its name before theirs (`--export-sql-db-connect`), and the flags given become the raw
route that the kind's declaration validates, exactly as a TOML route is.
"""

from __future__ import annotations

import types
import typing
from argparse import ArgumentParser
from dataclasses import dataclass
from typing import Any, Literal

import pydantic

from pxtserve.routes.kinds import ROUTE_KINDS

# fields that are not flags: the kind is the command's target; a response function is Python only
_NOT_FLAGS = {"type", "response_function"}


@dataclass(frozen=True)
class Flag:
    dest: str  # argparse's name for it: the field's, or "<option>_<field>" for a nested option's field
    path: tuple[str, ...]  # where its value goes in the raw route
    kwargs: tuple[tuple[str, Any], ...]  # add_argument's keywords

    @property
    def option(self) -> str:
        return "--" + self.dest.replace("_", "-")


def _without_none(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _argparse_kwargs(info: pydantic.fields.FieldInfo) -> dict[str, Any]:
    annotation = _without_none(info.annotation)
    kwargs: dict[str, Any] = {"help": info.description}
    if annotation is bool:
        kwargs.update(action="store_true", default=None)
    elif typing.get_origin(annotation) is list:
        kwargs.update(nargs="+")
    elif typing.get_origin(annotation) is Literal:
        kwargs.update(choices=list(typing.get_args(annotation)))
    return kwargs


def _flags() -> list[Flag]:
    flags: dict[str, Flag] = {}
    for spec in ROUTE_KINDS.values():
        for name, info in spec.model_fields.items():
            if name in _NOT_FLAGS:
                continue
            nested = _without_none(info.annotation)
            if isinstance(nested, type) and issubclass(nested, pydantic.BaseModel):
                found = [
                    Flag(f"{name}_{sub}", (name, sub), tuple(_argparse_kwargs(sub_info).items()))
                    for sub, sub_info in nested.model_fields.items()
                ]
            else:
                found = [Flag(name, (name,), tuple(_argparse_kwargs(info).items()))]
            for flag in found:
                known = flags.setdefault(flag.dest, flag)
                # kinds that share a flag share its meaning; the first kind's help text stands
                same = dict(known.kwargs).keys() - {"help"} == dict(flag.kwargs).keys() - {"help"}
                assert same, f"route kinds declare {flag.option} differently"
    return list(flags.values())


ROUTE_FLAGS = _flags()


def add_route_flags(parser: ArgumentParser) -> None:
    group = parser.add_argument_group("single-endpoint mode (serve insert|update|delete|query|compute ...)")
    for flag in ROUTE_FLAGS:
        group.add_argument(flag.option, dest=flag.dest, **dict(flag.kwargs))


def given_flags(options: dict[str, Any]) -> list[Flag]:
    return [flag for flag in ROUTE_FLAGS if options.get(flag.dest) is not None]


def raw_route(kind: str, options: dict[str, Any]) -> dict[str, Any]:
    """The route the given flags declare, as a TOML route table would."""
    route: dict[str, Any] = {"type": kind}
    for flag in given_flags(options):
        target = route
        for key in flag.path[:-1]:
            target = target.setdefault(key, {})
        target[flag.path[-1]] = options[flag.dest]
    return route
