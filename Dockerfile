# The Jorge app: one uvicorn worker per container (see docs/operations.md, "Several uvicorn workers").
#   docker build -t jorge .
#   docker run -p 8000:8000 jorge

# --- build: a wheel of the package and its dependencies ------------------------------------
FROM python:3.11-slim AS build
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml README.md ./
COPY ghl_real_estate_ai ./ghl_real_estate_ai
RUN pip install --upgrade pip && pip install .

# --- run: the virtualenv only, as an unprivileged user ------------------------------------
FROM python:3.11-slim AS run
RUN groupadd --system jorge && useradd --system --gid jorge --home-dir /app --create-home jorge
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    DATA_DIR=/app/data \
    DATABASE_URL=sqlite:////app/data/jorge.db
WORKDIR /app
RUN mkdir -p /app/data && chown jorge:jorge /app/data
USER jorge
EXPOSE 8000
# /ready pings the database and the cache; the standard library keeps the image free of curl.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/ready', timeout=4).status == 200 else 1)"]
CMD ["uvicorn", "ghl_real_estate_ai.app:app", "--host", "0.0.0.0", "--port", "8000", "--workers", "1", "--proxy-headers"]
