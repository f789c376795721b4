"""The child process of ``isolation="process"`` tasks (``python -m worker.procchild MODULE ...``).

It imports the task modules named on its command line (the modules that defined the worker's
process tasks, never a name from a message), then answers one request per line on stdin, in order:
``{"name": ..., "args": [...]}`` in, ``{"ok": ..., "value": ..., "error": ..., "retryable": ...,
"seconds": ...}`` out, JSON both ways (no Python object serialisation). The answers go to a
private copy of the original stdout; what a task prints goes to stderr, so it cannot break the
protocol. It exits at the end of
stdin, and when its worker is gone (its parent changes).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time

from worker.execute import run_task
from yadtq.loader import load_task_modules
from yadtq.registry import default_registry

_ENCODER = json.JSONEncoder(allow_nan=False, ensure_ascii=False)


def _watch_parent(parent: int) -> None:
    def loop() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=loop, name="yadtq-proc-parent-watch", daemon=True).start()


def serve(modules: list[str]) -> int:
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # a task's print() goes to stderr
    _watch_parent(os.getppid())
    load_task_modules(modules)
    for line in sys.stdin:
        try:
            request = json.loads(line)
            spec = default_registry.lookup(str(request["name"]))
            result = run_task(spec, tuple(request["args"]))
            answer = {"ok": result.ok, "value": result.value, "error": result.error,
                      "retryable": result.retryable, "seconds": result.seconds}
        except BaseException as exc:  # noqa: BLE001 - a bad request is answered, never fatal
            answer = {"ok": False, "value": None, "error": f"process task: {exc!r}"[:2000],
                      "retryable": False, "seconds": 0.0}
        answers.write(_ENCODER.encode(answer) + "\n")
        answers.flush()
    return 0


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1:]))
