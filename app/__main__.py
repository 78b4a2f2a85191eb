"""`python -m app`: serve the API with uvicorn on TINYRES_HOST:TINYRES_PORT."""

import uvicorn

from core.config import settings


def main() -> None:
    uvicorn.run(
        "app.main:app",
        host=settings.host,
        port=settings.port,
        proxy_headers=True,
        # Graceful shutdown: stop accepting, let in-flight requests finish, then exit.
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
