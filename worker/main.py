"""``yadtq-worker``: run a headless worker.

    yadtq-worker                         # built-in tasks (ADD, SUB, MUL, DIV, SLEEP)
    yadtq-worker --tasks mypkg.tasks     # plus the tasks registered in your module(s)
    yadtq-worker --scheduler             # only the scheduler: sends delayed tasks when due
    yadtq-worker --concurrency 32        # up to 32 tasks at once (default 8; 1: one at a time)
    yadtq-worker --queues default,emails # only these queues' tasks (default: the default queue)

Every worker also runs the scheduler (one of them leads at a time, by a Redis lock);
--no-scheduler leaves that to the others or to a --scheduler process.

First SIGTERM/SIGINT: finish the running tasks, write them, commit, leave the group (warm stop).
Second: exit at once (the tasks in hand are redelivered to another worker).

The worker runs in a child process that a small supervisor replaces when it ends abnormally (a
task that would not stop after its time limit, a crash, kill -9); --no-supervisor runs it in this
process (then exit code 75 asks your process manager for a restart).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from types import FrameType

from worker import logs
from worker.supervisor import CHILD_ENV, supervise, watch_parent
from yadtq import default_registry, default_schedules
from yadtq.errors import ServiceUnavailable
from yadtq.loader import load_task_modules
from yadtq.settings import Settings, add_arguments

log = logging.getLogger("yadtq.worker")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="yadtq-worker", description=__doc__, allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", action="append", default=[], metavar="MODULE",
                        help="import MODULE to register its tasks (repeatable); "
                             "env YADTQ_TASKS (comma-separated)")
    parser.add_argument("--worker-id", help="worker id (default HOST-PID)")
    parser.add_argument("--log-level", default=os.environ.get("YADTQ_LOG_LEVEL", "INFO"),
                        help="DEBUG, INFO, WARNING... [env YADTQ_LOG_LEVEL; default INFO]")
    parser.add_argument("--log-format", choices=logs.FORMATS,
                        default=os.environ.get("YADTQ_LOG_FORMAT", "text"),
                        help="text, or json: one JSON object a line [env YADTQ_LOG_FORMAT; "
                             "default text]")
    parser.add_argument("--metrics-port", type=int, metavar="PORT",
                        default=_env_int("YADTQ_METRICS_PORT"),
                        help="serve Prometheus metrics on http://HOST:PORT/metrics (9464 is the "
                             "usual port) [env YADTQ_METRICS_PORT; default off]")
    parser.add_argument("--metrics-host", default=os.environ.get("YADTQ_METRICS_HOST", "127.0.0.1"),
                        help="address the metrics listen on; 0.0.0.0 lets another host scrape "
                             "[env YADTQ_METRICS_HOST; default 127.0.0.1]")
    parser.add_argument("--max-tasks", type=int, help="exit after this many messages (tests)")
    parser.add_argument("--idle-exit", type=float, help="exit after this many idle seconds (tests)")
    parser.add_argument("--scheduler", action="store_true",
                        help="run only the scheduler (send scheduled tasks when due), no tasks")
    parser.add_argument("--no-scheduler", action="store_true",
                        help="do not take part in scheduling (other workers or a --scheduler "
                             "process send the due tasks)")
    parser.add_argument("--no-supervisor", action="store_true",
                        help="run the worker in this process (no automatic restart; exit code 75 "
                             "means: restart me)")
    add_arguments(parser)
    return parser


def _env_int(name: str) -> int | None:
    raw = os.environ.get(name, "")
    try:
        return int(raw) if raw else None
    except ValueError:
        sys.exit(f"yadtq-worker: {name}: not a port number: {raw!r}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.configure(args.log_level, args.log_format)
    if not args.no_supervisor and CHILD_ENV not in os.environ:
        return supervise(sys.argv[1:] if argv is None else argv)
    watch_parent()
    try:
        settings = Settings.from_args(args)
        load_task_modules(args.tasks)
        default_schedules.check(default_registry)  # each names a task of ours, with fitting args
    except (ValueError, OSError, ImportError) as exc:
        print(f"yadtq-worker: {exc}", file=sys.stderr)
        return 2

    if args.scheduler:
        return _run_scheduler(settings, args.worker_id)

    from worker.periodic import start_periodic
    from worker.worker import Worker

    worker = Worker(settings, default_registry, worker_id=args.worker_id,
                    schedule=not args.no_scheduler)
    logs.set_worker(worker.id)
    if args.metrics_port is not None:
        from worker.interfaces import kafka_offsets

        worker.metrics.watch_lag(settings, kafka_offsets)
        try:
            worker.metrics.serve(args.metrics_port, args.metrics_host)
        except OSError as exc:
            print(f"yadtq-worker: --metrics-port {args.metrics_port}: {exc}", file=sys.stderr)
            return 2
    periodic = start_periodic(settings, worker.store, default_schedules.routed(default_registry),
                              worker.id, worker.stopping)
    signals = {"count": 0}

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        signals["count"] += 1
        if signals["count"] == 1:
            log.info("signal %d: finishing the running tasks, then stopping (again to exit now)",
                     signum)
            worker.request_stop()
        else:
            log.warning("second signal: exiting now; the task in hand will be redelivered")
            os._exit(130)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        worker.run(max_tasks=args.max_tasks, idle_exit=args.idle_exit)
    except ServiceUnavailable as exc:
        print(f"yadtq-worker: {exc}", file=sys.stderr)
        return 1
    finally:
        periodic.join(timeout=2)
    if worker.exit_code:
        # a runner thread may be stuck in a task: end now, without waiting for it
        logging.shutdown()
        os._exit(worker.exit_code)
    return 0


def _run_scheduler(settings: Settings, owner: str | None) -> int:
    """``--scheduler``: the scheduling loop alone, in this thread, until SIGTERM/SIGINT."""
    import socket
    import threading

    from worker.interfaces import kafka_producer
    from worker.outbox import Outbox
    from worker.scheduler import Scheduler
    from yadtq.due import DueSet
    from yadtq.store import RedisStore

    owner = owner or f"{socket.gethostname()}-{os.getpid()}-scheduler"
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    outbox = Outbox(settings, kafka_producer, owner)
    log.info("scheduler %s started (prefix %s, topic %s)", owner, settings.key_prefix, settings.topic)
    try:
        Scheduler(settings, DueSet(RedisStore(settings)), outbox, owner, stopping).run()
    finally:
        outbox.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
