# syntax=docker/dockerfile:1
# Job Ledger image: `ledger api`, `ledger worker`, `ledger migrate` (see compose.yaml).
# Stage 1 builds a wheel and installs it with its dependencies into a virtual
# environment; stage 2 copies only that environment onto a slim Python, runs as an
# unprivileged user and probes /health.

FROM python:3.12-slim-trixie AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
RUN python -m venv /opt/ledger
COPY pyproject.toml README.md ./
COPY src ./src
COPY sql ./sql
RUN /opt/ledger/bin/pip install --upgrade pip \
    && /opt/ledger/bin/pip install . \
    && find /opt/ledger -name '__pycache__' -prune -exec rm -rf {} +

FROM python:3.12-slim-trixie AS runtime
LABEL org.opencontainers.image.title="job-ledger" \
      org.opencontainers.image.description="Event-sourced job processing service on PostgreSQL"
ENV PATH=/opt/ledger/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SERVER_HOST=0.0.0.0 \
    SERVER_PORT=8080 \
    LEDGER_DATA_DIR=/data \
    LOG_FORMAT=json
RUN groupadd --system --gid 10001 ledger \
    && useradd --system --uid 10001 --gid ledger --home-dir /data --shell /usr/sbin/nologin ledger \
    && mkdir -p /data/storage \
    && chown -R ledger:ledger /data
COPY --from=build /opt/ledger /opt/ledger
USER 10001:10001
WORKDIR /data
EXPOSE 8080 9464
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["ledger", "probe"]
ENTRYPOINT ["ledger"]
CMD ["api"]
