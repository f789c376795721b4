"""A periodic schedule for the integration tests (``yadtq-worker --tasks tests.periodic_for_tests``):
``COUNT tick`` every $YADTQ_TEST_PERIOD seconds (default 2), as schedule ``test-tick``. Separate from
``tests.tasks_for_tests`` so that no other test's workers schedule anything."""

from __future__ import annotations

import os

import tests.tasks_for_tests  # noqa: F401 - registers COUNT
from yadtq import periodic

SCHEDULE = "test-tick"

periodic("COUNT", every=int(os.environ.get("YADTQ_TEST_PERIOD") or 2), args=["tick"],
         name=SCHEDULE)
