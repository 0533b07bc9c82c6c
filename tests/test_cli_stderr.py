"""XLA's slow-compilation alarm is kept off the commands' terminal, and nothing else is."""

from __future__ import annotations

import os
import sys

from hoijax.cli._stderr import AlarmFilter, DropXlaAlarm

# As XLA 0.10 writes it (one write per log message), from a 2-core run of `icl_table.py`.
ALARM = (b"E1206 04:27:13.663801   22244 slow_operation_alarm.cc:73] \n"
         b"********************************\n"
         b"[Compiling module jit__train_step for CPU] Very slow compile? If you want to file a "
         b"bug, run with envvar XLA_FLAGS=--xla_dump_to=/tmp/foo and attach the results.\n"
         b"********************************\n")
TOOK = (b"E1206 04:27:27.639636   22243 slow_operation_alarm.cc:140] The operation took "
        b"2m13.975953511s\n")
OTHER_ERROR = b"E1206 04:34:45.078691   23412 dump.cc:118] Could not create directory: /x\n"


def test_filter_drops_the_alarm_and_forwards_the_rest_at_once():
    f = AlarmFilter()
    # A progress bar's redraws carry no newline and are forwarded as they come.
    assert f.feed(b"\r 10%|#   | 1/10") == b"\r 10%|#   | 1/10"
    assert f.feed(b"\r 20%|##  | 2/10") == b"\r 20%|##  | 2/10"
    assert f.feed(ALARM) == b""
    assert f.feed(TOOK + ALARM) == b""
    # Any other XLA message passes, also when it arrives in pieces.
    assert f.feed(OTHER_ERROR) == OTHER_ERROR
    assert f.feed(b"E") == b""  # may start a log line: held until its newline
    line = b"Error: the sequence s0 has no frames\n"
    assert f.feed(line[1:]) == line
    assert f.feed(b"***") == b""
    assert f.feed(b" stars in a message ***\n") == b"*** stars in a message ***\n"
    assert f.feed(b"done") == b"done"
    assert f.flush() == b""
    assert AlarmFilter().feed(b"[Comp") == b""  # held: could be the alarm's middle line


def test_descriptor_2_is_filtered_inside_and_restored_after(capfd):
    print("python before", file=sys.stderr, flush=True)
    with DropXlaAlarm():
        os.write(2, ALARM)
        os.write(2, b"kept by C\n")
        # One write: print() writes the text and its newline apart, and the filter's thread
        # may forward the C lines between the two (seen once on a loaded machine).
        sys.stderr.write("python inside\n")
        sys.stderr.flush()
        os.write(2, TOOK)
    os.write(2, b"after\n")
    err = capfd.readouterr().err
    # (pytest's capture also replaces sys.stderr, so Python's line may pass the C ones here)
    assert "python inside\n" in err
    assert err.replace("python inside\n", "") == "python before\nkept by C\nafter\n", err


def test_opt_out_leaves_descriptor_2_alone(capfd, monkeypatch):
    monkeypatch.setenv("HOIJAX_SHOW_XLA_ALARMS", "1")
    with DropXlaAlarm():
        os.write(2, ALARM)
    assert capfd.readouterr().err == ALARM.decode()
