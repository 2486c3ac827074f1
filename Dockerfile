# The photoman daemon in a container (README: "Docker"); docker-compose.yml builds and runs it.
# CPU torch by default. The CUDA build: --build-arg TORCH_INDEX_URL=https://pypi.org/simple (PyPI's
# Linux torch wheels are the CUDA ones; the compose service photoman-gpu does this).
FROM python:3.11-slim

ARG TORCH=torch==2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# the uid and gid the daemon runs as: yours (`id -u`, `id -g`), so the socket answers your photoman
ARG UID=1000
ARG GID=1000

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/home/photoman \
    PHOTOMAN_DATA_DIR=/var/lib/photoman \
    PHOTOMAN_STATE_DIR=/var/lib/photoman/state \
    PHOTOMAN_CACHE_DIR=/var/cache/photoman/photoman \
    HF_HOME=/var/cache/photoman/huggingface \
    PHOTOMAN_RUNTIME_DIR=/run/photoman \
    PHOTOMAN_AUTOSTART=0

# torch first, from its own index, so the project's torch>=2.4 dependency is already met
RUN pip install ${TORCH} --index-url ${TORCH_INDEX_URL}

COPY pyproject.toml README.md /src/
COPY photoman /src/photoman
COPY migrations /src/migrations
RUN pip install "/src[postgres]" && rm -rf /src

# the data dir and caches exist in the image, owned by the daemon's user, so the named volumes
# mounted on them start out owned by it too
RUN groupadd --non-unique --gid "${GID}" photoman \
    && useradd --non-unique --uid "${UID}" --gid "${GID}" --home-dir /home/photoman --create-home photoman \
    && install -d -o "${UID}" -g "${GID}" -m 700 /var/lib/photoman /var/cache/photoman /run/photoman

USER ${UID}:${GID}
# the daemon in the foreground: logs to stderr (docker logs), SIGTERM stops it cleanly (exit 0)
ENTRYPOINT ["photoman"]
CMD ["watch"]
