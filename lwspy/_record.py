"""A slotted record base: ``repr`` and ``==`` from ``__slots__``.

What ``@dataclass(slots=True)`` gives, without importing ``dataclasses`` (and ``inspect``,
``ast``, ``dis`` with it), which alone would cost a third of ``import lwspy``.
"""

from __future__ import annotations

__all__ = ["Record"]


class Record:
    """Subclasses list their fields in ``__slots__`` and set them in ``__init__``."""

    __slots__ = ()

    def __repr__(self) -> str:
        names: tuple[str, ...] = self.__slots__
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in names)
        return f"{type(self).__name__}({fields})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        names: tuple[str, ...] = self.__slots__
        return all(getattr(self, n) == getattr(other, n) for n in names)

    __hash__ = None  # type: ignore[assignment]  # mutable, like a dataclass with eq
