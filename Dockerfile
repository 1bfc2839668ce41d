# One image for the tracker and the simulator (the simulator is a client of the same package).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 NUMBA_CACHE_DIR=/tmp/numba-cache
WORKDIR /app
COPY pyproject.toml README.md ./
COPY tracker ./tracker
COPY simulator ./simulator
COPY schemas ./schemas
COPY data ./data
RUN pip install --no-cache-dir . && useradd --system --uid 10001 tracker
USER tracker

EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=5 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2).status == 200 else 1)"
CMD ["tracker", "run"]
