"""The server log: read from the end, rotated in place (no server)."""

from __future__ import annotations

import os
import stat

from mlflow_magic.state import logfile


def test_tail_reads_the_last_lines_after_an_offset(tmp_path):
    log = tmp_path / "server.log"
    logfile.append(log, "".join(f"line {i}\n" for i in range(100_000)))
    assert logfile.tail(log, 3) == "line 99997\nline 99998\nline 99999"
    offset = logfile.size(log)
    logfile.append(log, "new 1\nnew 2\n")
    assert logfile.tail(log, 10, offset) == "new 1\nnew 2"
    assert logfile.tail(log, 0) == ""
    assert logfile.tail(tmp_path / "missing.log") == ""
    assert stat.S_IMODE(log.stat().st_mode) == 0o600


def test_tail_after_rotation_reads_the_new_file(tmp_path):
    log = tmp_path / "server.log"
    logfile.append(log, "x" * 5000 + "\nold\n")
    offset = logfile.size(log)
    assert logfile.rotate(log, max_bytes=1000)
    logfile.append(log, "fresh\n")
    assert logfile.tail(log, 5, offset) == "fresh"


def test_rotation_keeps_the_writer_appending(tmp_path):
    log = tmp_path / "server.log"
    fd = logfile.open_for_append(log)  # as the server holds it
    try:
        os.write(fd, b"a" * 2000 + b"\n")
        assert not logfile.rotate(log, max_bytes=10_000)
        assert logfile.rotate(log, max_bytes=1000)
        os.write(fd, b"after rotation\n")
    finally:
        os.close(fd)
    assert log.read_bytes() == b"after rotation\n"
    assert (tmp_path / "server.log.1").read_bytes() == b"a" * 2000 + b"\n"
    assert stat.S_IMODE((tmp_path / "server.log.1").stat().st_mode) == 0o600
