# syntax=docker/dockerfile:1
# The modelyard image: one image, the role is the command.
#   docker build -t modelyard:0.1.0 .
#   docker run -p 8000:8000 modelyard:0.1.0              # `serve`: registry + gateway
#   docker run modelyard:0.1.0 registry | gateway        # one role (what the Helm chart runs)
# No BentoML inside (the image stays small): model versions run as their own BentoML images
# (`bentoml containerize`) and are registered with `endpoint`, so the deployer is `none`.

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY modelyard ./modelyard
COPY registry ./registry
COPY gateway ./gateway
COPY adapters ./adapters
RUN python -m venv /opt/modelyard \
 && /opt/modelyard/bin/pip install . \
 && /opt/modelyard/bin/pip uninstall --yes pip

FROM python:${PYTHON_VERSION}-slim
RUN groupadd --system --gid 10001 modelyard \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
      --home-dir /var/lib/modelyard --shell /usr/sbin/nologin modelyard \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/modelyard
COPY --from=build /opt/modelyard /opt/modelyard
ENV PATH=/opt/modelyard/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MODELYARD_HOST=0.0.0.0 \
    MODELYARD_PORT=8000 \
    MODELYARD_DATA_DIR=/var/lib/modelyard \
    MODELYARD_DEPLOYER=none
WORKDIR /var/lib/modelyard
USER 10001:10001
EXPOSE 8000
ENTRYPOINT ["modelyard"]
CMD ["serve"]
