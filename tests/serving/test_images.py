"""The process-wide bound on pixels being decoded at once (verticals.serving.images.PixelGate)."""

import threading
import time

from verticals.serving.images import PixelGate


def most_at_once(gate: PixelGate, sizes: list[int]) -> int:
    """How many of the decodes (one thread each, holding its pixels for a moment) ran together."""
    running, most, lock = [0], [0], threading.Lock()

    def decode(pixels: int) -> None:
        with gate.holding(pixels):
            with lock:
                running[0] += 1
                most[0] = max(most[0], running[0])
            time.sleep(0.05)
            with lock:
                running[0] -= 1

    threads = [threading.Thread(target=decode, args=(size,)) for size in sizes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    return most[0]


def test_large_images_decode_one_at_a_time_and_small_ones_together():
    assert most_at_once(PixelGate(100), [60, 60, 60]) == 1
    assert most_at_once(PixelGate(100), [10] * 6) == 6


def test_an_image_larger_than_the_gate_still_decodes_alone():
    gate = PixelGate(100)
    assert most_at_once(gate, [500, 500]) == 1
    with gate.holding(10):
        pass  # everything was given back
    assert most_at_once(gate, [50, 50]) == 2
