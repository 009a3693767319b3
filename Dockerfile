# syntax=docker/dockerfile:1
# Every service's image, from this one file and the repository's root:
#   make images   (each service in turn, with the arguments below), or by hand:
#   docker build --build-arg SERVICE=search-indexer --build-arg PACKAGE=tenx-search-indexer \
#     --build-arg MODULE=tenx_search_indexer --build-arg ENV_PREFIX=TENX_SEARCH_INDEXER \
#     -t tenx/search-indexer:0.1.0 .
# One image runs every process of its service: serve (the default), worker,
# relay, migrate, and the service's other commands (python -m <MODULE> --help).
# The context holds the workspace's manifests and sources only (.dockerignore).
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm
# What differs between the services; none has a default, so none is forgotten:
#   SERVICE      its folder under services/            (api, search-indexer)
#   PACKAGE      its workspace package, for uv sync    (tenx-api, tenx-search-indexer)
#   MODULE       its Python package, what python -m runs (tenx_api, tenx_search_indexer)
#   ENV_PREFIX   its settings' prefix, without the _   (TENX_API, TENX_SEARCH_INDEXER)
ARG SERVICE PACKAGE MODULE ENV_PREFIX

FROM ${PYTHON_IMAGE} AS build
ARG UV_VERSION=0.13.8
RUN pip install --no-cache-dir "uv==${UV_VERSION}"
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never UV_PROJECT_ENVIRONMENT=/app
WORKDIR /src
# The dependencies first (a layer that changes only with the lock), then the code.
COPY pyproject.toml uv.lock ./
COPY libs/common/pyproject.toml libs/common/
# A workspace member the lock names; its code (the tools) is never copied.
COPY libs/tools/pyproject.toml libs/tools/
COPY services/api/pyproject.toml services/api/
COPY services/auth/pyproject.toml services/auth/
COPY services/notify/pyproject.toml services/notify/
COPY services/search-indexer/pyproject.toml services/search-indexer/
# The service's arguments come into the stage here, after the layers every
# service shares (the builder then reuses them from one image to the next);
# a build without one of them stops now, naming it.
ARG SERVICE PACKAGE MODULE ENV_PREFIX
RUN : "${SERVICE:?is not set: make images passes every build argument}" \
    "${PACKAGE:?is not set: make images passes every build argument}" \
    "${MODULE:?is not set: make images passes every build argument}" \
    "${ENV_PREFIX:?is not set: make images passes every build argument}"
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-install-workspace --package "$PACKAGE"
COPY libs/common libs/common
COPY services/${SERVICE} services/${SERVICE}
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-editable --package "$PACKAGE"

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 tenx \
    && useradd --system --uid 10001 --gid tenx --no-create-home --shell /usr/sbin/nologin tenx
COPY --from=build /app /app
ARG MODULE ENV_PREFIX
# Nothing is written at run time: the bytecode was compiled at build time, so
# the root filesystem can be mounted read-only.
ENV PATH=/app/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    TENX_SERVICE_MODULE=${MODULE} ${ENV_PREFIX}_HOST=0.0.0.0 ${ENV_PREFIX}_PORT=8000
USER 10001:10001
EXPOSE 8000
# The exec form expands no variable, so a shell puts the module's name in and
# then becomes python -m <MODULE> <command> (exec): python is PID 1 and gets
# the stop signal itself.
ENTRYPOINT ["/bin/sh", "-c", "exec python -m \"$TENX_SERVICE_MODULE\" \"$@\"", "tenx"]
CMD ["serve"]
