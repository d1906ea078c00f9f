"""HTML form fields derived from the API's request schemas, so that a door setting added to
DoorIn / DoorPatch appears in the console without touching it, and form values are validated by
the very model the API validates JSON with."""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, Union

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class FormField:
    name: str
    label: str
    kind: Literal["bool", "choice", "int", "float", "text"]
    choices: tuple[str, ...]
    description: str | None
    required: bool


def _unwrap_optional(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def form_fields(model: type[BaseModel]) -> list[FormField]:
    """The fields of ``model`` that a plain HTML form can carry (flat scalars and choices); nested
    settings (lists, objects) are left to the API."""
    out: list[FormField] = []
    for name, info in model.model_fields.items():
        annotation = _unwrap_optional(info.annotation)
        choices: tuple[str, ...] = ()
        kind: Literal["bool", "choice", "int", "float", "text"]
        if annotation is bool:
            kind = "bool"
        elif typing.get_origin(annotation) is Literal and all(
            isinstance(a, str) for a in typing.get_args(annotation)
        ):
            kind, choices = "choice", tuple(typing.get_args(annotation))
        elif annotation is int:
            kind = "int"
        elif annotation is float:
            kind = "float"
        elif annotation is str:
            kind = "text"
        else:
            continue
        out.append(
            FormField(
                name=name,
                label=name.replace("_", " ").capitalize(),
                kind=kind,
                choices=choices,
                description=info.description,
                required=info.is_required(),
            )
        )
    return out


class FormError(ValueError):
    pass


def _convert(field: FormField, raw: str) -> object:
    value = raw.strip()
    if field.kind == "bool":
        if value not in ("true", "false"):
            raise FormError(f"{field.label}: choose yes or no")
        return value == "true"
    if field.kind == "int":
        try:
            return int(value)
        except ValueError as exc:
            raise FormError(f"{field.label}: a whole number is needed") from exc
    if field.kind == "float":
        try:
            return float(value)
        except ValueError as exc:
            raise FormError(f"{field.label}: a number is needed") from exc
    return value


def parse_form(model: type[M], form: typing.Mapping[str, Any], *, current: object | None = None) -> M:
    """Builds ``model`` from submitted form values. Empty optional text means "not given"; with
    ``current`` (an object carrying the present values), unchanged fields are left out, so that
    a PATCH records only what really changed. Raises FormError with a readable message."""
    data: dict[str, object] = {}
    for field in form_fields(model):
        raw = form.get(field.name)
        if not isinstance(raw, str):
            continue
        if raw.strip() == "" and not (field.required and field.kind == "text"):
            continue
        value = _convert(field, raw)
        if current is not None and getattr(current, field.name, object()) == value:
            continue
        data[field.name] = value
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'form'}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise FormError(problems) from exc
