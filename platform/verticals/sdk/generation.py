"""Text generation for causal language models: one engine per loaded model, continuous batching.

Concurrent requests share the model through a scheduler thread that runs one decode step for
every running sequence at a time; a new request is prefilled and joins the running batch
between two steps, and a finished or cancelled one leaves it — no request waits for another to
end. The batch is bounded by `max_batch` sequences and by `max_batch_tokens` (prompt plus
generated tokens held in the KV cache, summed over the running sequences); requests beyond the
bounds wait in order.

A task that streams (`Task.streams = True`) builds one with `Task.engine(model)` and turns an
input into a `GenerationRequest` with `Task.generation_request(model, input, options)`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class GenerationRequest:
    prompt_ids: list[int]
    max_new_tokens: int
    temperature: float = 1.0  # 0 means greedy
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)  # strings that end the text (not included)
    seed: int | None = None  # sampling with a seed repeats exactly


@dataclass
class GenerationEvent:
    """What the engine reports to a request's callback: text as it grows, then one final event."""

    text: str = ""  # the new text since the previous event
    finished: bool = False
    finish_reason: str | None = (
        None  # "stop" (end of sequence or a stop string), "length", "cancelled", "error"
    )
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None


Emit = Callable[[GenerationEvent], None]


@dataclass
class _Sequence:
    id: int
    request: GenerationRequest
    emit: Emit
    generator: object  # torch.Generator
    length: int = 0  # tokens of this sequence in the KV cache
    last_token: int = 0
    generated: list[int] = field(default_factory=list)
    sent: int = 0  # characters of the text already emitted
    cancelled: bool = False
    done: bool = False

    @property
    def reserve(self) -> int:
        """Tokens the sequence may still hold at most: what is cached plus what it may generate."""
        return self.length + (self.request.max_new_tokens - len(self.generated))


class ContinuousBatcher:
    """One scheduler thread per loaded model; see the module's docstring."""

    def __init__(
        self,
        model,
        tokenizer,
        *,
        eos_token_ids: list[int],
        max_batch: int = 8,
        max_batch_tokens: int = 8192,
        name: str = "generation",
    ):
        import threading

        self.model = model
        self.tokenizer = tokenizer
        self.eos = set(int(t) for t in eos_token_ids)
        self.max_batch = max(1, int(max_batch))
        self.max_batch_tokens = max(1, int(max_batch_tokens))
        self._waiting: list[_Sequence] = []
        self._running: list[_Sequence] = []
        self._cache: Any = None  # the running sequences' KV cache, left-padded to one length
        self._mask: Any = None  # [batch, cached length]: 1 for a token, 0 for padding
        self._ids = iter(range(1, 1 << 62))
        self._lock = threading.Condition()
        self._closed = False
        self.steps = 0  # decode steps run (for tests and benchmarks)
        self.largest_batch = 0
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    # --- callers ---------------------------------------------------------------------------------

    def submit(self, request: GenerationRequest, emit: Emit) -> int:
        import torch

        if not request.prompt_ids:
            raise ValueError("The prompt has no tokens.")
        generator = torch.Generator(device="cpu")
        generator.manual_seed(
            request.seed if request.seed is not None else int(torch.randint(0, 2**62, (1,)).item())
        )
        with self._lock:
            if self._closed:
                raise RuntimeError("This generation engine is closed.")
            sequence = _Sequence(next(self._ids), request, emit, generator)
            self._waiting.append(sequence)
            self._lock.notify()
        return sequence.id

    def cancel(self, request_id: int) -> None:
        """Stop a request: it ends with finish_reason "cancelled" (what it generated so far was sent)."""
        with self._lock:
            for sequence in self._waiting:
                if sequence.id == request_id:
                    self._waiting.remove(sequence)
                    self._finish(sequence, "cancelled")
                    return
            for sequence in self._running:
                if sequence.id == request_id:
                    sequence.cancelled = True

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationEvent]:
        """Run requests to their end (they batch with each other and with everyone else's); one final
        event each, whose `text` is the whole completion."""
        import threading

        texts: list[list[str]] = [[] for _ in requests]
        finals: list[GenerationEvent | None] = [None] * len(requests)
        done = threading.Semaphore(0)

        def collector(index):
            def emit(event: GenerationEvent) -> None:
                texts[index].append(event.text)
                if event.finished:
                    finals[index] = event
                    done.release()

            return emit

        for index, request in enumerate(requests):
            self.submit(request, collector(index))
        for _ in requests:
            done.acquire()
        results = []
        for index, final in enumerate(finals):
            assert final is not None  # each request's last event released `done`
            if final.finish_reason == "error":
                raise RuntimeError(final.error or "generation failed")
            results.append(
                GenerationEvent(
                    text="".join(texts[index]),
                    finished=True,
                    finish_reason=final.finish_reason,
                    prompt_tokens=final.prompt_tokens,
                    completion_tokens=final.completion_tokens,
                )
            )
        return results

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for sequence in self._waiting + self._running:
                if not sequence.done:
                    self._finish(sequence, "cancelled")
            self._waiting.clear()
            self._lock.notify()
        self._thread.join(timeout=10)

    # --- the scheduler -------------------------------------------------------------------------

    def _loop(self) -> None:
        import torch

        while True:
            with self._lock:
                while not self._closed and not self._waiting and not self._running:
                    self._lock.wait()
                if self._closed:
                    return
                admitted = self._admissible()
            try:
                with torch.inference_mode():
                    if admitted:
                        self._prefill(admitted)
                    self._drop_finished()
                    if self._running:
                        self._decode_step()
                        self._drop_finished()
            except Exception as exc:
                # the model failed: every sequence in flight ends with the error
                message = f"{type(exc).__name__}: {exc}"
                with self._lock:
                    for sequence in self._running + admitted:
                        if not sequence.done:
                            self._finish(sequence, "error", error=message)
                    self._running, self._cache, self._mask = [], None, None

    def _admissible(self) -> list[_Sequence]:
        """Waiting requests that fit beside the running ones (in order; at least one when idle)."""
        admitted: list[_Sequence] = []
        while self._waiting and len(self._running) + len(admitted) < self.max_batch:
            candidate = self._waiting[0]
            need = len(candidate.request.prompt_ids) + candidate.request.max_new_tokens
            group = self._running + admitted
            longest = max([need] + [s.reserve for s in group])
            if group and (len(group) + 1) * longest > self.max_batch_tokens:
                break
            if not group and need > self.max_batch_tokens:
                self._waiting.pop(0)
                self._finish(
                    candidate,
                    "error",
                    error=f"The prompt and max_tokens need {need} tokens of cache; "
                    f"this engine holds at most {self.max_batch_tokens}.",
                )
                continue
            admitted.append(self._waiting.pop(0))
        return admitted

    def _prefill(self, group: list[_Sequence]) -> None:
        """One forward over the prompts of newly admitted requests (left-padded to one length),
        their first tokens, and their KV cache joined to the running batch's."""
        import torch
        from transformers import DynamicCache

        device = self.model.device
        length = max(len(s.request.prompt_ids) for s in group)
        ids = torch.zeros((len(group), length), dtype=torch.long, device=device)
        mask = torch.zeros((len(group), length), dtype=torch.long, device=device)
        for row, sequence in enumerate(group):
            prompt = sequence.request.prompt_ids
            ids[row, length - len(prompt) :] = torch.tensor(prompt, device=device)
            mask[row, length - len(prompt) :] = 1
            sequence.length = len(prompt)
        padded = bool((mask == 0).any())
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
        cache = DynamicCache()
        logits = self.model(
            input_ids=ids,
            attention_mask=mask if padded else None,
            position_ids=positions,
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        ).logits[:, -1, :]
        self._join(group, cache, mask)
        for sequence, token in zip(group, self._sample(group, logits), strict=True):
            self._advance(sequence, token)

    def _join(self, group: list[_Sequence], cache, mask) -> None:
        """Add prefilled sequences to the running batch: left-pad the shorter side to one length."""
        import torch

        if self._cache is None:
            self._cache, self._mask = cache, mask
        else:
            length = max(self._mask.shape[1], mask.shape[1])
            for ours, theirs in zip(self._cache.layers, cache.layers, strict=True):
                ours.keys = torch.cat(
                    [_left_pad(ours.keys, length), _left_pad(theirs.keys, length)], dim=0
                )
                ours.values = torch.cat(
                    [_left_pad(ours.values, length), _left_pad(theirs.values, length)], dim=0
                )
            self._mask = torch.cat(
                [_left_pad(self._mask, length, dim=1), _left_pad(mask, length, dim=1)], dim=0
            )
        with self._lock:
            self._running.extend(group)
        self.largest_batch = max(self.largest_batch, len(self._running))

    def _decode_step(self) -> None:
        import torch

        device = self.model.device
        ids = torch.tensor([[s.last_token] for s in self._running], device=device)
        positions = torch.tensor([[s.length] for s in self._running], device=device)
        self._mask = torch.cat(
            [
                self._mask,
                torch.ones((len(self._running), 1), dtype=self._mask.dtype, device=device),
            ],
            dim=1,
        )
        # no padding (one sequence, say): the plain causal path
        padded = bool((self._mask == 0).any())
        logits = self.model(
            input_ids=ids,
            attention_mask=self._mask if padded else None,
            position_ids=positions,
            cache=self._cache,
            use_cache=True,
            logits_to_keep=1,
        ).logits[:, -1, :]
        self.steps += 1
        for sequence, token in zip(self._running, self._sample(self._running, logits), strict=True):
            sequence.length += 1
            self._advance(sequence, token)

    def _sample(self, sequences: list[_Sequence], logits) -> list[int]:
        import torch

        logits = logits.float()
        if all(sequence.request.temperature <= 0 for sequence in sequences):
            # all greedy: one argmax
            return logits.argmax(dim=-1).tolist()
        chosen = []
        for row, sequence in zip(logits, sequences, strict=True):
            temperature, top_p = sequence.request.temperature, sequence.request.top_p
            if temperature <= 0:
                chosen.append(int(torch.argmax(row)))
                continue
            probabilities = torch.softmax(row / temperature, dim=-1)
            if top_p < 1.0:
                ordered, order = torch.sort(probabilities, descending=True)
                keep = (
                    torch.cumsum(ordered, dim=-1) - ordered < top_p
                )  # the smallest set reaching top_p
                ordered = ordered * keep
                pick = torch.multinomial(ordered / ordered.sum(), 1, generator=sequence.generator)
                chosen.append(int(order[pick]))
            else:
                chosen.append(
                    int(torch.multinomial(probabilities, 1, generator=sequence.generator))
                )
        return chosen

    def _advance(self, sequence: _Sequence, token: int) -> None:
        """Take one generated token: end on EOS, a stop string or the length; send new text."""
        if sequence.cancelled:
            self._finish(sequence, "cancelled")
            return
        if token in self.eos:
            self._send(sequence, self._text(sequence), final="stop")
            return
        sequence.generated.append(token)
        sequence.last_token = token
        text = self._text(sequence)
        for stop in sequence.request.stop:
            at = text.find(stop, max(0, sequence.sent - len(stop)))
            if stop and at >= 0:
                self._send(sequence, text[:at], final="stop")
                return
        if len(sequence.generated) >= sequence.request.max_new_tokens:
            self._send(sequence, text, final="length")
            return
        # Hold back an unfinished character and whatever could still become a stop string.
        ready = len(text.rstrip("\ufffd"))
        for stop in sequence.request.stop:
            for size in range(min(len(stop) - 1, ready), 0, -1):
                if text[ready - size : ready] == stop[:size]:
                    ready -= size
                    break
        if ready > sequence.sent:
            self._send(sequence, text[:ready])

    def _text(self, sequence: _Sequence) -> str:
        return self.tokenizer.decode(sequence.generated, skip_special_tokens=True)

    def _send(self, sequence: _Sequence, text: str, final: str | None = None) -> None:
        delta = text[sequence.sent :] if len(text) > sequence.sent else ""
        sequence.sent = max(sequence.sent, len(text))
        if final is None:
            sequence.emit(
                GenerationEvent(
                    text=delta,
                    prompt_tokens=len(sequence.request.prompt_ids),
                    completion_tokens=len(sequence.generated),
                )
            )
        else:
            self._finish(sequence, final, text=delta)

    def _finish(
        self, sequence: _Sequence, reason: str, *, text: str = "", error: str | None = None
    ) -> None:
        if sequence.done:
            return
        sequence.done = True
        sequence.emit(
            GenerationEvent(
                text=text,
                finished=True,
                finish_reason=reason,
                error=error,
                prompt_tokens=len(sequence.request.prompt_ids),
                completion_tokens=len(sequence.generated),
            )
        )

    def _drop_finished(self) -> None:
        """Take finished sequences out of the batch, and the padding no sequence needs any more."""
        import torch

        keep = [
            index
            for index, sequence in enumerate(self._running)
            if not sequence.done and not sequence.cancelled
        ]
        for sequence in self._running:
            if sequence.cancelled and not sequence.done:
                self._finish(sequence, "cancelled")
        if len(keep) == len(self._running):
            return
        with self._lock:
            self._running = [self._running[i] for i in keep]
        if not keep:
            self._cache, self._mask = None, None
            return
        rows = torch.tensor(keep, device=self._mask.device)
        self._mask = self._mask.index_select(0, rows)
        # the first column some sequence still uses
        start = int((self._mask.sum(dim=0) > 0).nonzero()[0])
        self._mask = self._mask[:, start:]
        for layer in self._cache.layers:
            layer.keys = layer.keys.index_select(0, rows)[:, :, start:, :]
            layer.values = layer.values.index_select(0, rows)[:, :, start:, :]


def _left_pad(tensor, length: int, dim: int = 2):
    """Zeros in front of `dim` up to `length` (the KV cache's sequence axis is 2; a mask's is 1)."""
    import torch

    missing = length - tensor.shape[dim]
    if missing <= 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat(
        [torch.zeros(shape, dtype=tensor.dtype, device=tensor.device), tensor], dim=dim
    )
