# The sync service: `inventory db upgrade`, then the long-running loop with /metrics on :9464.
# Config and secrets come from mounted files (see docker-compose.yml); nothing secret is baked in.
FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY deploy/constraints.txt ./constraints.txt
COPY inventory ./inventory
COPY connectors ./connectors
COPY migrations ./migrations
# The dependencies at the versions the tests passed with (deploy/freeze_constraints.py), not the
# newest of the day: the image is reproducible and a new upstream release cannot break it unseen.
RUN PIP_CONSTRAINT=/src/constraints.txt pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.12-slim
# openssh-client: Docker sources reached over ssh:// use the system ssh client.
RUN apt-get update \
    && apt-get install -y --no-install-recommends openssh-client \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/inventory --create-home inventory
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
COPY deploy/docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
USER 10001
WORKDIR /var/lib/inventory
ENV INVENTORY_CONFIG=/etc/inventory/inventory.yaml \
    PYTHONUNBUFFERED=1
EXPOSE 9464
# Healthy while the loop answers on /metrics (a failing source is a metric, not a dead container).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9464/metrics', timeout=4)"]
# SIGTERM lets the source in progress finish; give it time (docker stop -t / stop_grace_period).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
CMD ["sync", "--metrics-port", "9464", "--metrics-host", "0.0.0.0"]
