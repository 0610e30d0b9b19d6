FROM python:3.11-slim-bookworm
WORKDIR /app
COPY pyproject.toml README.md ./
COPY keys keys
COPY protocols protocols
COPY registry registry
COPY agency agency
COPY broker broker
COPY audit audit
COPY infoshare infoshare
RUN pip install --no-cache-dir . && useradd --system --home /var/lib/infoshare infoshare
USER infoshare
ENTRYPOINT []
