# One image, both entry points: `floe broker` (the default) and `floe operator`.
#   docker build -t floe:dev .
#   docker run --rm floe:dev broker --help
#   docker run --rm floe:dev operator render -f /dev/stdin < examples/streamcluster.yaml

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/floe
WORKDIR /src
COPY pyproject.toml README.md ./
COPY api ./api
COPY broker ./broker
COPY cli ./cli
COPY operator ./operator
RUN /opt/floe/bin/pip install ".[operator]"

FROM python:3.11-slim
LABEL org.opencontainers.image.title="floe" \
      org.opencontainers.image.description="Kafka-compatible broker over S3-compatible storage, and its Kubernetes operator"
COPY --from=build /opt/floe /opt/floe
ENV PATH=/opt/floe/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# The numeric user matches runAsUser in the broker pods and the chart.
RUN groupadd --system --gid 10001 floe \
 && useradd --system --uid 10001 --gid floe --no-create-home --shell /usr/sbin/nologin floe
USER 10001:10001
# 9092 Kafka, 9644 broker admin HTTP, 8080 operator liveness.
EXPOSE 9092 9644 8080
ENTRYPOINT ["floe"]
CMD ["broker"]
