# The infoshare image: registry, router, provisioning and gateways (one per organisation).
#
# The base image is pinned by digest (python 3.11.10 on Debian 12 slim), and
# every Python package comes from requirements.lock with its hashes checked
# (pip --require-hashes); the project itself is then built offline.
FROM python:3.11.10-slim-bookworm@sha256:5148c0e4bbb64271bca1d3322360ebf4bfb7564507ae32dd639322e4952a6b16

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY requirements.lock ./
RUN pip install --require-hashes --no-deps -r requirements.lock

COPY pyproject.toml README.md ./
COPY keys keys
COPY protocols protocols
COPY registry registry
COPY agency agency
COPY broker broker
COPY audit audit
COPY infoshare infoshare
COPY deploy/with-secrets /usr/local/bin/with-secrets
RUN pip install --no-deps --no-build-isolation --no-index . \
    && rm -rf build *.egg-info

# One user for every infoshare process, and the mount points of its volumes,
# made here so that new named volumes start owned by that user:
#   home             the holder's own directory (its private keys): 0700
#   public           public files it hands over (public keys)
#   inbox-public     public files handed to it by another holder (read-only)
#   registry-public  the registry's public key (read-only)
#   token            its own registry token (read-only)
#   bundle           its organisation's bundle (read-only)
#   handover         where a one-shot job writes a secret for one other holder
RUN groupadd --system --gid 10001 infoshare \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/infoshare \
       --shell /usr/sbin/nologin infoshare \
    && install -d -m 0700 -o infoshare -g infoshare /var/lib/infoshare \
       /var/lib/infoshare/home /var/lib/infoshare/token /var/lib/infoshare/bundle \
       /var/lib/infoshare/handover \
    && install -d -m 0755 -o infoshare -g infoshare /var/lib/infoshare/public \
       /var/lib/infoshare/inbox-public /var/lib/infoshare/registry-public

USER 10001:10001
WORKDIR /var/lib/infoshare
# The deployment's CA (compose mounts it): the registry's HTTPS certificate,
# and RabbitMQ's, are checked against it.
ENV INFOSHARE_HOME=/var/lib/infoshare/home \
    INFOSHARE_REGISTRY_CA_FILE=/etc/infoshare/ca.pem
ENTRYPOINT ["with-secrets"]
CMD ["infoshare", "--help"]
