FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY streamer ./streamer
COPY detectors ./detectors
COPY actions ./actions
COPY spendbrake ./spendbrake
RUN pip install --no-cache-dir ".[server,report]" && useradd --create-home spendbrake \
    && mkdir -p /var/lib/spendbrake && chown spendbrake /var/lib/spendbrake
USER spendbrake
ENV SPENDBRAKE_STATE_DIR=/var/lib/spendbrake
ENTRYPOINT []
CMD ["spendbrake", "--help"]
