# fanout bot image: `docker compose up -d bot` runs `fanout run` with settings from production.env.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

COPY pyproject.toml README.md ./
COPY engine ./engine
COPY simulator ./simulator
COPY live ./live
COPY marketdata ./marketdata
COPY analysis ./analysis
COPY storage ./storage
COPY fanout ./fanout
COPY data/market_rules.json data/demo_signals.csv ./data/
RUN pip install --upgrade pip && pip install ".[postgres]" \
    && useradd --create-home --uid 1000 fanout && mkdir -p /app/state && chown fanout /app/state
USER fanout

# state (SQLite journal, paper balances) lives in a volume; override with DATABASE_URL
ENV DATABASE_URL=sqlite:////app/state/fanout.db FANOUT_DATA_DIR=/app/data
ENTRYPOINT ["fanout"]
CMD ["run"]
