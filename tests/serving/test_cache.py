"""The in-process model cache (bounded by memory, LRU) and micro-batching of concurrent calls."""

import threading
import time

import pytest

from verticals.serving.batcher import MicroBatcher
from verticals.serving.cache import ModelCache


def test_least_recently_used_models_leave_first_when_memory_is_full():
    cache = ModelCache(max_bytes=250)
    loads = []

    def loader(name):
        return lambda: loads.append(name) or name

    cache.get(("a",), 100, loader("a"))
    cache.get(("b",), 100, loader("b"))
    cache.get(("a",), 100, loader("a"))  # a is used again: b is now the oldest
    cache.get(("c",), 100, loader("c"))  # 300 > 250: b leaves
    assert cache.keys() == [("a",), ("c",)] and loads == ["a", "b", "c"]
    assert cache.used_bytes == 200 and cache.evictions == 1
    cache.get(("huge",), 1000, loader("huge"))  # a model bigger than the cache still serves, alone
    assert cache.keys() == [("huge",)]


def test_concurrent_requests_for_one_model_load_it_once():
    cache = ModelCache(max_bytes=10**9)
    loads = []

    def slow_load():
        loads.append(1)
        time.sleep(0.2)
        return object()

    results = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.get(("m",), 1, slow_load)))
        for _ in range(6)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(loads) == 1 and len({id(r) for r in results}) == 1


def test_concurrent_calls_join_one_batch_and_each_gets_its_own_outputs():
    sizes = []

    def predict(inputs, options):
        sizes.append(len(inputs))
        time.sleep(0.05)
        return [f"{x}:{options.get('top_k')}" for x in inputs]

    batcher = MicroBatcher(predict, max_batch=64, max_wait=0.05)
    answers = {}

    def call(i):
        answers[i] = batcher.submit([f"in{i}a", f"in{i}b"], {"top_k": 1})

    threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == {i: [f"in{i}a:1", f"in{i}b:1"] for i in range(8)}
    assert max(sizes) > 2, f"no call was batched with another: {sizes}"


def test_a_failing_batch_fails_each_caller_and_the_batcher_goes_on():
    def predict(inputs, options):
        if "boom" in inputs:
            raise ValueError("bad batch")
        return inputs

    batcher = MicroBatcher(predict, max_batch=4, max_wait=0)
    with pytest.raises(ValueError, match="bad batch"):
        batcher.submit(["boom"])
    assert batcher.submit(["fine"]) == ["fine"]


def test_different_options_are_predicted_apart():
    seen = []

    def predict(inputs, options):
        seen.append((tuple(inputs), options.get("top_k")))
        return inputs

    batcher = MicroBatcher(predict, max_batch=8, max_wait=0.05)
    threads = [
        threading.Thread(target=batcher.submit, args=([f"x{k}"], {"top_k": k})) for k in (1, 2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(k for _inputs, k in seen) == [1, 2]


def test_an_idle_batcher_stops_and_refuses_new_work():
    batcher = MicroBatcher(lambda inputs, options: inputs, max_batch=4, max_wait=0, idle=0.05)
    assert batcher.submit(["a"]) == ["a"]
    deadline = time.monotonic() + 5
    while not batcher.closed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert batcher.closed
    from verticals.serving.batcher import BatcherClosed

    with pytest.raises(BatcherClosed):
        batcher.submit(["b"])


def test_a_waiting_batcher_keeps_nothing_of_the_last_batch():
    import gc
    import weakref

    class Image:  # stands for a decoded input: large, and gone once its call is answered
        pass

    batcher = MicroBatcher(lambda inputs, options: [0] * len(inputs), max_batch=4, max_wait=0)
    sent = Image()
    gone = weakref.ref(sent)
    assert batcher.submit([sent]) == [0]
    del sent
    deadline = time.monotonic() + 5
    while gone() is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    gc.collect()
    assert gone() is None, "the batcher's thread still holds the inputs of its last batch"
