# Image for the web, worker and beat services of docker-compose.yml.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
RUN DJANGO_DEBUG=1 python manage.py collectstatic --noinput
USER nobody
EXPOSE 8000
CMD ["gunicorn", "portal.wsgi:application", "-c", "python:portal.gunicorn", "--bind", "0.0.0.0:8000", "--workers", "2"]
