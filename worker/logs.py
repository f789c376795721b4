"""The worker's log lines: text (the default) or one JSON object a line (``--log-format json``).

The only module that imports ``pythonjsonlogger``. A JSON line has ``time`` (ISO 8601, UTC),
``level``, ``logger``, ``worker``, ``message`` and, for lines about one task, ``task_id``, ``task``
(its name), ``attempt``, ``state``, ``seconds`` and ``error``. Text that comes from tasks goes
through the same escaping as the text format (``yadtq.text.safe_text``) before it is logged; JSON
then escapes what it must, and non-ASCII as ``\\uXXXX``.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime

from pythonjsonlogger.json import JsonFormatter

FORMATS = ("text", "json")
TEXT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class WorkerField(logging.Filter):
    """Adds ``worker`` to every record (the id is known once the worker is built)."""

    def __init__(self) -> None:
        super().__init__()
        self.worker = ""

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = self.worker
        return True


class Json(JsonFormatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


WORKER = WorkerField()


def configure(level: str, fmt: str = "text") -> None:
    """Logs to stderr at ``level`` in ``fmt`` (``text`` or ``json``)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(WORKER)
    if fmt == "json":
        handler.setFormatter(Json("%(asctime)s %(levelname)s %(name)s %(worker)s %(message)s",
                                  rename_fields={"asctime": "time", "levelname": "level",
                                                 "name": "logger"}))
    else:
        handler.setFormatter(logging.Formatter(TEXT))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    logging.getLogger("kafka").setLevel(logging.ERROR)


def set_worker(worker_id: str) -> None:
    WORKER.worker = worker_id
