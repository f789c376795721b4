"""The YADTQ dashboard (``yadtq-tui``): a Textual app over an injected ``yadtq.Client``.

    from yadtq import Client
    from yadtq_tui import make_app
    make_app(Client()).run()

``yadtq_tui.data`` and ``yadtq_tui.text`` do not import Textual; the app is
imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from yadtq_tui.app import YadtqApp, make_app

__all__ = ["YadtqApp", "make_app"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from yadtq_tui import app

        return getattr(app, name)
    raise AttributeError(f"module 'yadtq_tui' has no attribute {name!r}")
