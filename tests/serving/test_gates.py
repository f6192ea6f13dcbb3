"""What concurrent predict calls hold together is bounded per process (verticals.serving.gates)."""

import threading
import time

from verticals.serving.gates import Gate


def most_at_once(gate: Gate, sizes: list[int]) -> int:
    """How many holders (one thread each, holding its units for a moment) passed the gate together."""
    running, most, lock = [0], [0], threading.Lock()

    def hold(units: int) -> None:
        with gate.holding(units):
            with lock:
                running[0] += 1
                most[0] = max(most[0], running[0])
            time.sleep(0.05)
            with lock:
                running[0] -= 1

    threads = [threading.Thread(target=hold, args=(size,)) for size in sizes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    return most[0]


def test_large_holdings_pass_one_at_a_time_and_small_ones_together():
    assert most_at_once(Gate(100), [60, 60, 60]) == 1
    assert most_at_once(Gate(100), [10] * 6) == 6


def test_a_holding_larger_than_the_gate_still_passes_alone():
    gate = Gate(100)
    assert most_at_once(gate, [500, 500]) == 1
    with gate.holding(10):
        pass  # everything was given back
    assert most_at_once(gate, [50, 50]) == 2
