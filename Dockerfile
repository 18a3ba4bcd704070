# The ledger's Python package (the `pdl` command) for docker-compose.yml's consumers and api.
#   docker build -t personal-data-ledger:local .
#   docker run --rm -e LEDGER_MASTER_KEY=... personal-data-ledger:local pdl --help
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LEDGER_DATA_DIR=/data

WORKDIR /src
COPY . .
RUN pip install --no-cache-dir .

# /data is created here, owned by pdl, so a fresh named volume mounted on it inherits that owner.
RUN useradd --system --uid 10001 --user-group --create-home pdl \
    && mkdir /data \
    && chown pdl:pdl /data
USER pdl
WORKDIR /data

EXPOSE 8080
# No ENTRYPOINT: every command names `pdl` itself (compose: ["pdl", "consume", "--all"]).
CMD ["pdl", "--help"]
