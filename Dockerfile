# One image for every service; docker-compose.yml picks the command.
# Builds on x86-64 and on a Raspberry Pi 4 (arm64).
FROM python:3.11-slim-bookworm

RUN apt-get update \
 && apt-get install -y --no-install-recommends alsa-utils libsndfile1 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# torch first, pinned. On arm64 the default wheel is CPU-only; on x86-64 pass
# --build-arg TORCH_INDEX_URL=<PyTorch's CPU wheel index>, or the default is a multi-GB CUDA build.
ARG TORCH_INDEX_URL=
RUN pip install --no-cache-dir "torch==2.13.0" ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"}

COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
RUN pip install --no-cache-dir ".[ml,dashboard,reports,notify]"

# No component writes audio to disk; this user owns only the caches and the state folder.
# Both exist in the image, owned by the user, so the named volumes Compose mounts there
# (model-cache, spool, *-state) start with that owner instead of root.
RUN useradd --create-home --uid 1000 soundscape \
 && mkdir -p /var/lib/soundscape /home/soundscape/.cache \
 && chown soundscape:soundscape /var/lib/soundscape /home/soundscape/.cache
USER soundscape
ENV HF_HOME=/home/soundscape/.cache/huggingface \
    SOUNDSCAPE_INGEST_SPOOL=/var/lib/soundscape/spool.sqlite3 \
    PYTHONUNBUFFERED=1
ENTRYPOINT ["soundscape"]
CMD ["--help"]
