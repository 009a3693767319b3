"""The baselines the api is measured against: a bare FastAPI JSON endpoint and a
raw ASGI app, served by the same uvicorn setup (uvloop, httptools, one process).

Run: python -m bench.baseline_apps fastapi|asgi PORT
"""

import json
import sys
from typing import Any

import uvicorn
from fastapi import FastAPI

DOCUMENT = {
    "id": "00000000-0000-4000-8000-000000000000",
    "sku": "DEMO-00000",
    "name": "Baseline product",
    "description": "A product-sized JSON document.",
    "category": "kitchen",
    "price_cents": 1299,
    "currency": "EUR",
    "stock": 10,
    "version": 1,
}


def fastapi_app() -> FastAPI:
    app = FastAPI()

    @app.get("/v1/products/{product_id}")
    async def product(product_id: str) -> dict[str, Any]:
        return DOCUMENT

    return app


BODY = json.dumps(DOCUMENT).encode()


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": BODY})


def main() -> None:
    kind, port = sys.argv[1], int(sys.argv[2])
    app: Any = fastapi_app() if kind == "fastapi" else asgi_app
    uvicorn.run(
        app, host="127.0.0.1", port=port, loop="uvloop", http="httptools", log_level="warning"
    )


if __name__ == "__main__":
    main()
