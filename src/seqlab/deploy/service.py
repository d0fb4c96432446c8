"""The prediction service: FastAPI app answering `GET /health` and `POST /predict` from a predictor.

Texts of concurrent requests are gathered into batches (up to `max_batch_size` texts, waiting at
most `batch_timeout_ms` for a batch to fill) and run on one worker thread, so the model sees full
batches under load and the event loop stays free. Errors answer JSON `{"error": "..."}`.

A request body is refused before it is parsed: 415 unless it is JSON, 413 when it is larger than
`max_body_bytes` (a declared Content-Length at once, a chunked body as soon as that many bytes arrived).
"""

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from seqlab.deploy.predictors import Predictor
from seqlab.deploy.translation import TranslationPredictor

log = logging.getLogger(__name__)


@dataclass
class ServiceLimits:
    max_batch_size: int = 64  # texts per model call
    batch_timeout_ms: float = 5.0  # the longest a batch waits for more texts; a full batch runs at once
    max_texts_per_request: int = 256
    max_text_chars: int = 20000
    max_body_bytes: int = 8 * 2**20  # a request's JSON, read only up to this size


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    texts: list[str]


class LimitExceeded(Exception):
    pass


class BodyTooLarge(StarletteHTTPException):
    """Raised while the body is read, so FastAPI passes it on to the 413 handler instead of answering 400."""

    def __init__(self, max_body_bytes: int) -> None:
        super().__init__(413, f"the request body is larger than max_body_bytes={max_body_bytes} bytes")


class RequestBodyLimits:
    """ASGI middleware: a POST must declare a JSON content type (else 415) and carry at most
    `max_body_bytes` bytes (else 413, from Content-Length before anything is read; a chunked body,
    which declares no length, is counted as it arrives).

    Recent FastAPI has a `max_body_size` of its own, but the older releases seqlab's `fastapi>=0.110`
    admits would take that argument into `**extra` and silently not limit anything.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        media_type = headers.get("content-type", "").partition(";")[0].strip().lower()
        if media_type != "application/json" and not media_type.endswith("+json"):
            problem = f"content type {media_type or 'missing'}: send the request as JSON (content-type: application/json)"
            return await _error(415, problem)(scope, receive, send)
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            return await _error(413, BodyTooLarge(self.max_body_bytes).detail)(scope, receive, send)
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLarge(self.max_body_bytes)
            return message

        await self.app(scope, counted, send)


@dataclass
class _Pending:
    text: str
    future: asyncio.Future


class MicroBatcher:
    """Queues single texts and answers each with its prediction, computed in batches."""

    def __init__(self, predictor: Predictor, max_batch_size: int, timeout_s: float) -> None:
        self.predictor = predictor
        self.max_batch_size = max_batch_size
        self.timeout_s = timeout_s
        self.queue: asyncio.Queue[_Pending] = asyncio.Queue()

    async def predict(self, texts: Sequence[str]) -> list[tuple[dict[str, Any], bool]]:
        loop = asyncio.get_running_loop()
        pending = [_Pending(text, loop.create_future()) for text in texts]
        for item in pending:
            self.queue.put_nowait(item)
        return list(await asyncio.gather(*(item.future for item in pending)))

    async def run(self) -> None:
        while True:
            batch = [await self.queue.get()]
            # Texts of concurrent requests join this batch until it is full or the timeout has passed,
            # whichever comes first: a full batch does not wait. A get cut short by the timeout leaves
            # the queue as it was.
            try:
                async with asyncio.timeout(self.timeout_s):
                    while len(batch) < self.max_batch_size:
                        batch.append(await self.queue.get())
            except TimeoutError:
                pass
            try:
                predictions = await asyncio.to_thread(self.predictor.predict, [item.text for item in batch])
            except Exception as error:  # a failed batch fails its requests, not the service
                log.exception("prediction failed")
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(error)
                continue
            truncated = set(predictions.truncated)
            for index, (item, prediction) in enumerate(zip(batch, predictions.items)):
                if not item.future.done():
                    item.future.set_result((prediction, index in truncated))


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": message})


def create_app(predictor: Predictor, limits: ServiceLimits, info: dict[str, Any] | None = None) -> FastAPI:
    batcher = MicroBatcher(predictor, limits.max_batch_size, limits.batch_timeout_ms / 1000)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        worker = asyncio.create_task(batcher.run())
        yield
        worker.cancel()

    app = FastAPI(title="seqlab", lifespan=lifespan)
    app.add_middleware(RequestBodyLimits, max_body_bytes=limits.max_body_bytes)

    @app.exception_handler(RequestValidationError)
    async def malformed(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = []
        for problem in error.errors():
            where = ".".join(str(part) for part in problem.get("loc", ()) if part != "body")
            problems.append(f"{where}: {problem.get('msg')}" if where else str(problem.get("msg")))
        return _error(422, 'malformed request: expected a JSON object {"texts": ["...", ...]} (' + "; ".join(problems) + ")")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return _error(error.status_code, str(error.detail))

    @app.exception_handler(LimitExceeded)
    async def too_large(request: Request, error: LimitExceeded) -> JSONResponse:
        return _error(413, str(error))

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "labels": predictor.label_names,
            "max_length_tokens": predictor.max_length,
            "limits": {
                "max_texts_per_request": limits.max_texts_per_request,
                "max_text_chars": limits.max_text_chars,
                "max_batch_size": limits.max_batch_size,
                "max_body_bytes": limits.max_body_bytes,
            },
            **(info or {}),
        }

    @app.post("/predict")
    async def predict(request: PredictRequest) -> dict[str, Any]:
        texts = request.texts
        if not texts:
            return _error(422, '"texts" is empty: send at least one text')
        if len(texts) > limits.max_texts_per_request:
            raise LimitExceeded(f"{len(texts)} texts in one request; the limit is {limits.max_texts_per_request}")
        for index, text in enumerate(texts):
            if len(text) > limits.max_text_chars:
                raise LimitExceeded(f"texts[{index}] has {len(text)} characters; the limit is {limits.max_text_chars}")
        results = await batcher.predict(texts)
        truncated = [index for index, (_, was_truncated) in enumerate(results) if was_truncated]
        if isinstance(predictor, TranslationPredictor):
            answer: dict[str, Any] = {"translations": [prediction["translation"] for prediction, _ in results]}
        else:
            answer = {"predictions": [prediction for prediction, _ in results]}
        if truncated:
            answer["truncated"] = truncated
            answer["warning"] = f"{len(truncated)} text(s) were longer than the model's limit of {predictor.max_length} tokens and were truncated"
        return answer

    return app
