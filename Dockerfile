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
COPY config/proxy.example.toml /etc/trigger-proxy/proxy.toml
ENV PATH="/opt/venv/bin:$PATH" PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
USER 10001
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status != 200)"]
ENTRYPOINT ["trigger-proxy"]
CMD ["serve", "--config", "/etc/trigger-proxy/proxy.toml", "--host", "0.0.0.0", "--port", "8080"]
