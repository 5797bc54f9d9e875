# One image for every CHORUS service: `chorus serve <name>` picks the service.
# Build: docker build -t chorus:0.1.0 .
FROM python:3.11-slim AS build
ENV UV_LINK_MODE=copy UV_COMPILE_BYTECODE=1 UV_PYTHON_DOWNLOADS=never UV_PROJECT_ENVIRONMENT=/app/.venv
RUN pip install --no-cache-dir "uv==0.13.8"
WORKDIR /src
COPY pyproject.toml uv.lock ./
COPY libs ./libs
COPY apps ./apps
COPY services ./services
RUN uv sync --frozen --no-dev --all-packages --no-editable

FROM python:3.11-slim AS runtime
LABEL org.opencontainers.image.title="chorus" \
      org.opencontainers.image.description="CHORUS coordination runtime services"
RUN groupadd --system --gid 10001 chorus \
 && useradd --system --uid 10001 --gid chorus --home-dir /var/lib/chorus --shell /usr/sbin/nologin chorus \
 && mkdir -p /var/lib/chorus && chown chorus:chorus /var/lib/chorus
COPY --from=build /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CHORUS_HTTP_HOST=0.0.0.0 \
    CHORUS_HTTP_PORT=8080 \
    CHORUS_DATA_DIR=/var/lib/chorus \
    CHORUS_LOG_FORMAT=json
USER 10001:10001
WORKDIR /var/lib/chorus
# Writes go only to /var/lib/chorus (a volume), so the root filesystem can be read-only.
VOLUME ["/var/lib/chorus"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os,urllib.request,sys; sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"CHORUS_HTTP_PORT\",\"8080\")}/health/ready', timeout=2).status == 200 else 1)"]
ENTRYPOINT ["chorus", "serve"]
CMD ["election"]
