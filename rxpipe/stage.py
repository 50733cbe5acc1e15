"""Stages: named operators, and the plugin kinds they belong to.

An operator is any callable ``Observable[A] -> Observable[B]``. A :class:`Stage` is an
operator with a name, a plugin kind and the parameters it was built with, so pipelines
can name it in events and errors and write it back to a pipeline file.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeAlias, TypeVar

import attrs
import reactivex
from reactivex import operators as ops

from rxpipe.batch import Batch
from rxpipe.errors import BatchError, StageError, describe_value

__all__ = ["Operator", "PluginKind", "Stage"]

A = TypeVar("A")
B = TypeVar("B")

Operator: TypeAlias = Callable[[reactivex.Observable[A]], reactivex.Observable[B]]
"""A plugin: a callable from an observable of ``A`` to an observable of ``B``."""


class PluginKind(enum.StrEnum):
    """Pipcook's plugin kinds, in pipeline order."""

    COLLECT = "collect"
    ACCESS = "access"
    PROCESS = "process"
    MODELS = "models"
    TRAIN = "train"
    EVALUATE = "evaluate"
    DEPLOY = "deploy"
    CUSTOM = "custom"


@attrs.frozen
class Stage(Generic[A, B]):
    """A named operator: calling it applies the operator.

    Args:
        name: registered name, ``"kind.name"`` (e.g. ``"process.normalize"``).
        operator: the operator itself.
        kind: the plugin kind.
        params: the parameters the stage was built with (for pipeline files and logs).

    Example:
        >>> from reactivex import operators as ops
        >>> double = Stage("custom.double", ops.map(lambda x: x * 2))
        >>> reactivex.of(1).pipe(double).run()
        2
    """

    name: str
    operator: Operator[A, B] = attrs.field(repr=False)
    kind: PluginKind = PluginKind.CUSTOM
    params: Mapping[str, Any] = attrs.field(factory=dict)

    def __call__(self, source: reactivex.Observable[A]) -> reactivex.Observable[B]:
        out = self.operator(source)
        if not isinstance(out, reactivex.Observable):
            raise StageError(
                self.name,
                f"expected its operator to return an Observable. Received: {describe_value(out)}",
            )
        if self.kind in _BATCH_KINDS:  # a wrong item fails here, not in the next stage
            return out.pipe(ops.map(_BatchCheck(self.name, self.kind)))
        return out


_BATCH_KINDS = frozenset({PluginKind.COLLECT, PluginKind.ACCESS, PluginKind.PROCESS})


@attrs.frozen
class _BatchCheck:
    """Passes batches on; anything else fails, naming the stage (collect, access, process)."""

    stage: str
    kind: PluginKind

    def __call__(self, item: Any) -> Any:
        if isinstance(item, Batch):
            return item
        raise BatchError(
            f"{self.stage}: expected a {self.kind.value} plugin to emit Batch items. "
            f"Received: {describe_value(item)}"
        )
