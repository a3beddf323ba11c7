"""Handlers printing from several threads at once: every line stays whole."""

from __future__ import annotations

import io
import threading

from runtime.watchdog.lines import LineWriter


def test_a_thread_switch_inside_a_print_leaves_both_lines_whole() -> None:
    """`print` writes its text, then its newline: another thread's line may come between
    (seen in CI as "running Arunning B" on one line of a replica's output)."""
    target = io.StringIO()
    out = LineWriter(target)  # type: ignore[arg-type]
    out.write("running A")  # thread A, before its newline
    other = threading.Thread(target=lambda: print("running B", file=out, flush=True))
    other.start()
    other.join()
    out.write("\n")  # thread A's newline
    assert target.getvalue().splitlines() == ["running B", "running A"]


def test_lines_printed_by_many_threads_at_once_stay_whole() -> None:
    target = io.StringIO()
    out = LineWriter(target)  # type: ignore[arg-type]
    start = threading.Barrier(8)

    def handler(index: int) -> None:
        start.wait()
        for call in range(200):
            print(f"running {index}-{call}", file=out, flush=True)  # text, then "\n"

    threads = [threading.Thread(target=handler, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = target.getvalue().splitlines()
    assert sorted(lines) == sorted(f"running {i}-{c}" for i in range(8) for c in range(200))


def test_a_partial_line_is_shown_when_flushed_and_the_rest_follows() -> None:
    target = io.StringIO()
    out = LineWriter(target)  # type: ignore[arg-type]
    out.write("progress: ")
    assert target.getvalue() == ""
    out.flush()
    assert target.getvalue() == "progress: "
    out.write("done\nnext")
    assert target.getvalue() == "progress: done\n"
    assert out.fileno is not None and out.writable()
