"""The generation engine: continuous batching gives each request what it would get alone, new
requests join a running batch, bounds hold, stop strings, seeds and cancellation behave."""

import threading
import time

import pytest
import torch

from verticals.sdk.generation import ContinuousBatcher, GenerationEvent, GenerationRequest

ALPHABET = "_abcdefghijklmnopqrstuvwxyz ,.!?ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"  # id 0 ("_") is the end token


class CharTokenizer:
    """One character per token: what the engine needs of a tokenizer (decode)."""

    def encode(self, text: str) -> list[int]:
        return [ALPHABET.index(c) for c in text]

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return "".join(ALPHABET[i] for i in ids if not (skip_special_tokens and i == 0))


@pytest.fixture(scope="module")
def model():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(ALPHABET),
        hidden_size=48,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=1,
        eos_token_id=0,
        pad_token_id=0,
    )
    return LlamaForCausalLM(config).eval()


tokenizer = CharTokenizer()


@pytest.fixture
def engine(model):
    engine = ContinuousBatcher(
        model, tokenizer, eos_token_ids=[0], max_batch=8, max_batch_tokens=4096
    )
    yield engine
    engine.close()


def alone(model, prompt: str, max_new_tokens: int) -> str:
    """Plain greedy `generate` on one prompt: the reference a batched request must match."""
    ids = torch.tensor([tokenizer.encode(prompt)])
    with torch.inference_mode():
        out = model.generate(
            ids, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=0, pad_token_id=0
        )
    return tokenizer.decode(out[0, ids.shape[1] :].tolist())


def request(prompt: str, max_new_tokens: int = 24, **options) -> GenerationRequest:
    return GenerationRequest(
        prompt_ids=tokenizer.encode(prompt),
        max_new_tokens=max_new_tokens,
        temperature=options.pop("temperature", 0.0),
        **options,
    )


PROMPTS = [
    "Hello there",
    "A",
    "The quick brown fox jumps",
    "What is the capital of France?",
    "xyz",
    "Numbers 123 and more",
]


def test_batched_greedy_matches_each_prompt_alone(model, engine):
    results = engine.generate([request(p) for p in PROMPTS])
    assert [r.text for r in results] == [alone(model, p, 24) for p in PROMPTS]
    assert engine.largest_batch > 1
    # Decode steps are shared: far fewer than one per generated token.
    generated = sum(r.completion_tokens for r in results)
    assert engine.steps < generated / 2, (engine.steps, generated)
    for r, prompt in zip(results, PROMPTS, strict=True):
        assert r.prompt_tokens == len(prompt) and r.finish_reason in ("stop", "length")


def test_a_request_joins_a_running_batch_and_changes_nothing(model, engine):
    started, events = threading.Event(), []

    def long_emit(event: GenerationEvent):
        events.append(event)
        started.set()

    engine.submit(request(PROMPTS[2], max_new_tokens=300), long_emit)
    assert started.wait(10)
    late = engine.generate([request(PROMPTS[0], max_new_tokens=10)])[0]
    deadline = time.monotonic() + 30
    while not events[-1].finished and time.monotonic() < deadline:
        time.sleep(0.01)
    assert engine.largest_batch == 2, "the late request waited for the running one to end"
    assert late.text == alone(model, PROMPTS[0], 10)
    assert "".join(e.text for e in events) == alone(model, PROMPTS[2], 300)


def test_text_streams_in_pieces_that_add_up(engine):
    events = []
    done = threading.Event()
    engine.submit(
        request("Hello there", max_new_tokens=30),
        lambda e: (events.append(e), e.finished and done.set()),
    )
    assert done.wait(30)
    assert len(events) > 5
    assert sum(1 for e in events if e.finished) == 1 and events[-1].finished
    assert (
        events[-1].completion_tokens == len("".join(e.text for e in events))
        or events[-1].finish_reason == "stop"
    )


def test_max_tokens_ends_with_length_and_counts_tokens(engine):
    result = engine.generate([request("Hello there", max_new_tokens=5)])[0]
    if result.finish_reason == "length":
        assert result.completion_tokens == 5 and len(result.text) == 5
    else:  # the model chose its end token first
        assert result.completion_tokens < 5


def test_a_stop_string_ends_the_text_before_it(model, engine):
    free = alone(model, "Hello there", 40)
    stop = free[10:12]
    assert stop and stop not in free[:10]
    events = []
    done = threading.Event()
    engine.submit(
        request("Hello there", max_new_tokens=40, stop=[stop]),
        lambda e: (events.append(e), e.finished and done.set()),
    )
    assert done.wait(30)
    text = "".join(e.text for e in events)
    assert text == free[: free.index(stop)]
    assert events[-1].finish_reason == "stop"
    assert not any(stop in e.text for e in events)


def test_sampling_with_a_seed_repeats_and_seeds_differ(engine):
    options = {"temperature": 1.5, "top_p": 0.95, "max_new_tokens": 30}
    first = engine.generate([request("Once", seed=7, **options)])[0].text
    again = engine.generate(
        [request("Once", seed=7, **options), request("Twice", seed=8, **options)]
    )[0].text
    other = engine.generate([request("Once", seed=8, **options)])[0].text
    assert first == again
    assert first != other


def test_cancel_ends_a_running_request(engine):
    events, first = [], threading.Event()
    done = threading.Event()

    def emit(event):
        events.append(event)
        first.set()
        if event.finished:
            done.set()

    ident = engine.submit(request("Hello there", max_new_tokens=400), emit)
    assert first.wait(10)
    engine.cancel(ident)
    assert done.wait(10)
    assert events[-1].finish_reason == "cancelled"
    assert events[-1].completion_tokens < 400
    assert engine.generate([request("A", max_new_tokens=3)])[0].finish_reason in (
        "stop",
        "length",
    )  # still serving


def test_the_batch_size_bound_holds(model):
    engine = ContinuousBatcher(
        model, tokenizer, eos_token_ids=[0], max_batch=2, max_batch_tokens=4096
    )
    try:
        results = engine.generate([request(p, max_new_tokens=12) for p in PROMPTS[:5]])
        assert engine.largest_batch == 2
        assert [r.text for r in results] == [alone(model, p, 12) for p in PROMPTS[:5]]
    finally:
        engine.close()


def test_the_cache_bound_holds_and_refuses_what_cannot_fit(model):
    engine = ContinuousBatcher(
        model, tokenizer, eos_token_ids=[0], max_batch=8, max_batch_tokens=80
    )
    try:
        # Each needs about 40 tokens of cache: two fit, the others wait their turn.
        results = engine.generate([request("Hello there", max_new_tokens=28) for _ in range(4)])
        assert engine.largest_batch == 2 and len({r.text for r in results}) == 1
        with pytest.raises(RuntimeError, match="at most 80"):
            engine.generate([request("Hello there", max_new_tokens=100)])
    finally:
        engine.close()


def test_a_failing_model_fails_its_requests_and_the_engine_goes_on(model):
    class Flaky(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner, self.fail = model, True

        @property
        def device(self):
            return model.device

        def forward(self, **kwargs):
            if self.fail:
                self.fail = False
                raise RuntimeError("out of memory")
            return self.inner(**kwargs)

    engine = ContinuousBatcher(Flaky(), tokenizer, eos_token_ids=[0])
    try:
        with pytest.raises(RuntimeError, match="out of memory"):
            engine.generate([request("Hello")])
        assert engine.generate([request("Hello", max_new_tokens=8)])[0].text == alone(
            model, "Hello", 8
        )
    finally:
        engine.close()
