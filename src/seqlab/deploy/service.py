"""The prediction service: FastAPI app answering `GET /health` and `POST /predict` from a predictor.

Texts of concurrent requests are gathered into batches (up to `max_batch_size` texts, waiting at
most `batch_timeout_ms` for a batch to fill) and run on one worker thread, so the model sees full
batches under load and the event loop stays free. Errors answer JSON `{"error": "..."}`.
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
from starlette.exceptions import HTTPException as StarletteHTTPException

from seqlab.deploy.predictors import ClassificationPredictor

log = logging.getLogger(__name__)


@dataclass
class ServiceLimits:
    max_batch_size: int = 64  # texts per model call
    batch_timeout_ms: float = 5.0  # how long a batch waits for more texts
    max_texts_per_request: int = 256
    max_text_chars: int = 20000


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    texts: list[str]


class LimitExceeded(Exception):
    pass


@dataclass
class _Pending:
    text: str
    future: asyncio.Future


class MicroBatcher:
    """Queues single texts and answers each with its prediction, computed in batches."""

    def __init__(self, predictor: ClassificationPredictor, max_batch_size: int, timeout_s: float) -> None:
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
            if self.queue.qsize() < self.max_batch_size - 1:
                await asyncio.sleep(self.timeout_s)  # let texts of concurrent requests join this batch
            while len(batch) < self.max_batch_size and not self.queue.empty():
                batch.append(self.queue.get_nowait())
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


def create_app(predictor: ClassificationPredictor, limits: ServiceLimits, info: dict[str, Any] | None = None) -> FastAPI:
    batcher = MicroBatcher(predictor, limits.max_batch_size, limits.batch_timeout_ms / 1000)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        worker = asyncio.create_task(batcher.run())
        yield
        worker.cancel()

    app = FastAPI(title="seqlab", lifespan=lifespan)

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
            "limits": {"max_texts_per_request": limits.max_texts_per_request, "max_text_chars": limits.max_text_chars, "max_batch_size": limits.max_batch_size},
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
        answer: dict[str, Any] = {"predictions": [prediction for prediction, _ in results]}
        if truncated:
            answer["truncated"] = truncated
            answer["warning"] = f"{len(truncated)} text(s) were longer than the model's limit of {predictor.max_length} tokens and were truncated"
        return answer

    return app
