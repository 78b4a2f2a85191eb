# One image for the API and the workers. The GPU build of TensorFlow ([and-cuda] pulls
# the CUDA and cuDNN wheels), so the same image runs the worker on an NVIDIA GPU.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    TINYRES_DATA_ROOT=/data \
    TINYRES_HOST=0.0.0.0 \
    TINYRES_PORT=8000

WORKDIR /app
COPY pyproject.toml README.md ./
COPY app ./app
COPY core ./core
COPY model ./model
COPY worker ./worker
RUN python -m pip install --upgrade pip && python -m pip install '.[gpu]'

# Never run as root: the data volume is owned by this user.
RUN useradd --create-home --uid 10001 tinyres && mkdir -p /data && chown tinyres /data
USER tinyres
VOLUME ["/data"]
EXPOSE 8000

HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import urllib.request,os; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"TINYRES_PORT\"]}/healthz', timeout=4)"

# The API; the workers override the command (see docker-compose.yml; `make run` starts the same commands from deploy/supervisord.conf).
CMD ["python", "-m", "app"]
