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


def two_requests(max_batch_size: int, timeout_s: float, first: list[str], second: list[str]) -> tuple[list[list[str]], list[list[str]]]:
    """The model calls a MicroBatcher makes, and the labels each request gets back, when `second`
    arrives 50 ms after `first` (while `first` waits for its batch to fill)."""

    async def scenario():
        predictor = EchoPredictor()
        batcher = MicroBatcher(predictor, max_batch_size=max_batch_size, timeout_s=timeout_s)
        worker = asyncio.create_task(batcher.run())
        first_answer = asyncio.create_task(batcher.predict(first))
        await asyncio.sleep(0.05)
        second_answer = asyncio.create_task(batcher.predict(second))
        try:
            answers = await asyncio.wait_for(asyncio.gather(first_answer, second_answer), timeout=5)
        finally:
            worker.cancel()
        return predictor.calls, answers

    calls, answers = asyncio.run(scenario())
    return calls, [[prediction["label"] for prediction, _ in answer] for answer in answers]


def test_a_batch_that_fills_runs_at_once_instead_of_waiting_out_the_timeout():
    # A 30 s timeout: the answers (within 5 s) come only if the full batch does not wait it out.
    calls, labels = two_requests(4, 30.0, ["a1", "a2"], ["b1", "b2"])
    assert calls == [["a1", "a2", "b1", "b2"]]
    assert labels == [["a1", "a2"], ["b1", "b2"]]


def test_a_batch_that_does_not_fill_runs_after_the_timeout_with_what_arrived():
    calls, labels = two_requests(64, 0.2, ["a"], ["b1", "b2"])
    assert calls == [["a", "b1", "b2"]]
    assert labels == [["a"], ["b1", "b2"]]
