# syntax=docker/dockerfile:1
# The modelyard image: one image, the role is the command. BentoML is inside (the `serving`
# extra), so the image runs both shapes of the Helm chart:
#   docker build -t modelyard:0.1.0 .
#   docker run -p 8000:8000 -p 8001:8001 modelyard:0.1.0
#                                               # `serve`: registry, gateway (gRPC on 8001) and a
#                                               # `bentoml serve` per promoted version (the
#                                               # chart's default)
#   docker run modelyard:0.1.0 registry         # one role of the scaled shape (or `gateway`)
#   docker run modelyard:0.1.0 serve-version --model iris --version 2
#                                               # one registered version (a `models` entry)
# A Bento runs here only with the Python packages this image has (BentoML, numpy,
# scikit-learn, ...); for others, build FROM this image or use `bentoml containerize` images.

ARG PYTHON_VERSION=3.11

# The build stage has a C compiler (the full image): the gateway's hot path is compiled with
# mypyc (setup.py, MODELYARD_COMPILE=1), which type-checks it against the installed packages,
# so modelyard is installed twice: as Python with its dependencies and the compiler (the
# `compile` extra), then compiled over it. The runtime image carries neither mypy nor pip.
FROM python:${PYTHON_VERSION} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY modelyard ./modelyard
COPY contract ./contract
COPY registry ./registry
COPY gateway ./gateway
COPY adapters ./adapters
RUN python -m venv /opt/modelyard \
 && /opt/modelyard/bin/pip install ".[serving,compile]" \
 && MODELYARD_COMPILE=1 /opt/modelyard/bin/pip install --no-build-isolation --no-deps \
      --force-reinstall . \
 && /opt/modelyard/bin/pip uninstall --yes mypy pip

FROM python:${PYTHON_VERSION}-slim
RUN groupadd --system --gid 10001 modelyard \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
      --home-dir /var/lib/modelyard --shell /usr/sbin/nologin modelyard \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/modelyard
COPY --from=build /opt/modelyard /opt/modelyard
ENV PATH=/opt/modelyard/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    BENTOML_DO_NOT_TRACK=true \
    MODELYARD_HOST=0.0.0.0 \
    MODELYARD_PORT=8000 \
    MODELYARD_DATA_DIR=/var/lib/modelyard
WORKDIR /var/lib/modelyard
USER 10001:10001
EXPOSE 8000 8001
ENTRYPOINT ["modelyard"]
CMD ["serve"]
