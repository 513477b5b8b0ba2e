# trigger-proxy image: multi-stage, slim, non-root, no secrets inside.
# Secrets come from the environment at run time (see README: Deploy).

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY proxy ./proxy
RUN python -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin trigger-proxy
COPY --from=build /opt/venv /opt/venv
COPY deploy/healthcheck.py /opt/healthcheck.py
# No configuration inside: the operator's is mounted at TRIGGER_PROXY_CONFIG (a missing mount
# is one line and exit 2). Listening on every interface, and the admin port (when
# server.metrics_port is set) too, since a container's loopback is its own; each of these
# variables is overridden with `docker run -e`, and TRIGGER_PROXY_PORT as well.
ENV PATH="/opt/venv/bin:$PATH" PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
  TRIGGER_PROXY_CONFIG=/etc/trigger-proxy/proxy.toml \
  TRIGGER_PROXY_HOST=0.0.0.0 \
  TRIGGER_PROXY_METRICS_HOST=0.0.0.0
USER 10001
EXPOSE 8080
# On the port serve uses: TRIGGER_PROXY_PORT, else the config's server.port, else 8080.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["python", "/opt/healthcheck.py"]
ENTRYPOINT ["trigger-proxy"]
CMD ["serve"]
