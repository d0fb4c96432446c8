"""seqlab-serve's micro-batcher: when a batch of concurrent requests' texts runs, and whose answers each request gets."""

import asyncio

from seqlab.deploy.predictors import Predictions
from seqlab.deploy.service import MicroBatcher


class EchoPredictor:
    """Labels each text with itself, and records the batches it was called with."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def predict(self, texts: list[str]) -> Predictions:
        self.calls.append(list(texts))
        return Predictions([{"label": text, "probs": {}} for text in texts], [])


def test_a_batch_that_fills_runs_at_once_instead_of_waiting_out_the_timeout():
    async def scenario():
        predictor = EchoPredictor()
        batcher = MicroBatcher(predictor, max_batch_size=4, timeout_s=30.0)
        worker = asyncio.create_task(batcher.run())
        first = asyncio.create_task(batcher.predict(["a1", "a2"]))
        await asyncio.sleep(0.05)  # the second request arrives while the first waits for its batch to fill
        second = asyncio.create_task(batcher.predict(["b1", "b2"]))
        try:
            answers = await asyncio.wait_for(asyncio.gather(first, second), timeout=5)
        finally:
            worker.cancel()
        return predictor.calls, answers

    calls, answers = asyncio.run(scenario())
    assert calls == [["a1", "a2", "b1", "b2"]]
    assert [[prediction["label"] for prediction, _ in answer] for answer in answers] == [["a1", "a2"], ["b1", "b2"]]


def test_a_batch_that_does_not_fill_runs_after_the_timeout_with_what_arrived():
    async def scenario():
        predictor = EchoPredictor()
        batcher = MicroBatcher(predictor, max_batch_size=64, timeout_s=0.2)
        worker = asyncio.create_task(batcher.run())
        first = asyncio.create_task(batcher.predict(["a"]))
        await asyncio.sleep(0.05)
        second = asyncio.create_task(batcher.predict(["b1", "b2"]))
        try:
            answers = await asyncio.wait_for(asyncio.gather(first, second), timeout=5)
        finally:
            worker.cancel()
        return predictor.calls, answers

    calls, answers = asyncio.run(scenario())
    assert calls == [["a", "b1", "b2"]]
    assert [[prediction["label"] for prediction, _ in answer] for answer in answers] == [["a"], ["b1", "b2"]]
