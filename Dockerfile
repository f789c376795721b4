# YADTQ image: the worker (default), the CLI (`yadtq`) and the dashboard (`yadtq-tui`).
#
#   docker build -t yadtq .
#   docker run --rm -e YADTQ_KAFKA_BOOTSTRAP=... -e YADTQ_REDIS_URL=... yadtq            # worker
#   docker run --rm -it -e ... yadtq yadtq-tui                                           # dashboard
#
# Two stages: the first builds a wheel from the sources, the second installs only that wheel,
# so the runtime image carries no source tree, build tools or pip cache.

FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# README.md is needed by the build: pyproject.toml names it as the package's readme.
COPY pyproject.toml README.md ./
COPY yadtq/ ./yadtq/
COPY worker/ ./worker/
COPY yadtq_tui/ ./yadtq_tui/
RUN pip wheel --no-deps --wheel-dir /wheels .


FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

COPY --from=build /wheels /tmp/wheels
RUN pip install /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels \
    && useradd --create-home --uid 10001 --shell /usr/sbin/nologin yadtq

# The worker imports --tasks / YADTQ_TASKS modules from its working directory: mount them here.
WORKDIR /app
USER yadtq

# Headless worker; override the command for the CLI or the dashboard.
CMD ["yadtq-worker"]
