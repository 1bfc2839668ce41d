# One image for the tracker and the simulator (the simulator is a client of the same package).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 NUMBA_CACHE_DIR=/tmp/numba-cache
WORKDIR /app
COPY pyproject.toml README.md ./
COPY tracker ./tracker
COPY simulator ./simulator
COPY schemas ./schemas
COPY data ./data
# The geofence kernels compiled ahead of time (make kernels; docs/operations.md): a worker then never
# loads numba (~115 MiB less RSS). gcc only for the build; should the build fail, numba's JIT runs.
# Built from / so that it compiles the installed package (the one `tracker run` imports), not /app's copy.
RUN pip install --no-cache-dir . && useradd --system --uid 10001 tracker \
 && apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
 && (cd / && python -m tracker.geofence.kernels || true) \
 && apt-get purge -y gcc libc6-dev && apt-get autoremove -y && rm -rf /var/lib/apt/lists/* /tmp/numba-cache
USER tracker

EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=5 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2).status == 200 else 1)"
CMD ["tracker", "run"]
