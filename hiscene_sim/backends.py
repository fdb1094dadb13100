"""Backend registries: a name -> class, chosen in config or on the command line.

Each stage with interchangeable implementations (2D segmentation, completion, image / 3D
generation) keeps one :class:`Registry`. Neural backends register a class whose heavy imports
happen inside it, so listing or choosing backends never imports torch models, detectron2 etc.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class BackendError(RuntimeError):
    """A backend that cannot be used here (unknown name, missing package or weights)."""


class Registry(Generic[T]):
    def __init__(self, kind: str, default: str) -> None:
        self.kind = kind
        self.default = default
        self._factories: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            self._factories[name] = factory
            return factory

        return decorator

    def names(self) -> list[str]:
        return sorted(self._factories)

    def create(self, name: str | None = None, **kwargs) -> T:
        name = name or self.default
        if name not in self._factories:
            raise BackendError(f"unknown {self.kind} backend {name!r}; choose from {', '.join(self.names())}")
        return self._factories[name](**kwargs)
