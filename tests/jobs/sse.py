"""Reading a server-sent-events answer as a client does, for the tests."""

import json


def parse_block(block: str) -> dict:
    """One SSE block (its blank line left off): {"id", "event", "data"} for an event, {"comment"}
    for a comment line. The data repeats the id and the type of the event: they must agree."""
    if block.startswith(":"):
        return {"comment": block[1:].strip()}
    fields = dict(line.split(": ", 1) for line in block.split("\n"))
    assert set(fields) == {"id", "event", "data"}, block
    data = json.loads(fields["data"])
    assert data["id"] == int(fields["id"]) and data["type"] == fields["event"], block
    return {"id": int(fields["id"]), "event": fields["event"], "data": data}


def blocks(response):
    """The blocks of a streaming response as they come, however its chunks cut them."""
    buffer = ""
    for chunk in response.streaming_content:
        buffer += chunk.decode()
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            if block:
                yield parse_block(block)
    assert not buffer.strip(), f"the stream ended inside an event: {buffer!r}"
