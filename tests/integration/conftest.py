"""The integration tests start real processes: PostgreSQL and Redis come from the suite's session fixtures
(tests/conftest.py); the Chroma server, uvicorn and the Celery worker from tests/integration/product.py."""
