# One image for the web server and the workers.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

COPY pyproject.toml README.md ./
RUN python -m pip install --upgrade pip && python -m pip install -e .

COPY . .
# Static files are collected at build time and served by WhiteNoise from the web container.
RUN DEBUG=false SECRET_KEY=build-only-not-secret ALLOWED_HOSTS=localhost \
    python manage.py collectstatic --noinput

RUN useradd --create-home medcot && mkdir -p /app/var && chown -R medcot /app/var
USER medcot
EXPOSE 8000
CMD ["gunicorn", "medcot.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", "--timeout", "120"]
