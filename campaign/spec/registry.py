"""Registries of the spec sections picked by ``kind:``: samplers, analyses and reference methods.

A variant is one module in its family's folder (``campaign/spec/samplers/``, ``analyses/``,
``reference/``) whose class the family's ``register`` decorates; the family's package imports
every module in its folder, so adding a variant edits no other file. The discriminated union, the
kind names and the JSON schema all derive from the registry.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable
from typing import Annotated, Any, TypeVar, Union, get_args

from pydantic import BaseModel, Field

Model = TypeVar("Model", bound=type[BaseModel])


class Kinds:
    """The variants of one spec family, by their ``kind`` (the default of their ``kind: Literal[...]``)."""

    def __init__(self, family: str):
        self.family = family
        self.classes: dict[str, type[BaseModel]] = {}

    def register(self, cls: Model) -> Model:
        """Class decorator: add a variant under the single value of its ``kind`` Literal."""
        (kind,) = get_args(cls.model_fields["kind"].annotation)
        if kind in self.classes and self.classes[kind] is not cls:
            raise ValueError(f"two {self.family} variants claim kind {kind!r}: {self.classes[kind].__name__}, "
                             f"{cls.__name__}")
        self.classes[kind] = cls
        return cls

    def discover(self, package: str, path: Iterable[str]) -> None:
        """Import every module of ``package`` (its folder ``path``), registering what they define."""
        for module in sorted(pkgutil.iter_modules(path), key=lambda m: m.name):
            importlib.import_module(f"{package}.{module.name}")

    def names(self) -> tuple[str, ...]:
        return tuple(self.classes)

    def union(self) -> Any:
        """``Annotated[Union[...], Field(discriminator="kind")]`` of every registered variant."""
        return Annotated[Union[tuple(self.classes.values())], Field(discriminator="kind")]  # noqa: UP007

    def __getitem__(self, kind: str) -> type[BaseModel]:
        return self.classes[kind]


SAMPLERS = Kinds("sampler")
ANALYSES = Kinds("analysis")
REFERENCE_METHODS = Kinds("reference method")
