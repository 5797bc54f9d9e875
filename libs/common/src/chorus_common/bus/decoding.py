"""Bytes from the bus as a model, or one kind of error saying what they failed to be."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ValidationError

from chorus_common.errors import MalformedBodyError

__all__ = ["decode_as"]

M = TypeVar("M", bound=BaseModel)


def decode_as(model: type[M], data: bytes, what: str) -> M:
    """``data`` as ``model``; :class:`MalformedBodyError` naming ``what`` and the first
    reason otherwise."""
    try:
        return model.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]["msg"] if exc.errors() else str(exc)
        raise MalformedBodyError(f"{what} is not a {model.__name__}: {first}") from None
