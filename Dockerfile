FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DATABASE_PATH=/data/bot.sqlite3

WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY bot.py settings.py composition.py sharding.py ./
COPY cogs ./cogs
COPY jobs ./jobs
COPY client ./client
COPY storage ./storage

RUN useradd --create-home --uid 10001 bot \
    && mkdir -p /data \
    && chown bot:bot /data
USER bot
VOLUME ["/data"]

# Only the bot runs here; `docker run … python bot.py check` is the pre-flight.
CMD ["python", "bot.py"]
