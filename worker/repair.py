"""The reconciler (next commit)."""

from __future__ import annotations


class Reconciler:
    def start(self) -> None: ...
    def join(self, timeout: float) -> None: ...
