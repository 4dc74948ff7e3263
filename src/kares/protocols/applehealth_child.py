"""The Apple Health parser in a process of its own: ``read_export_columns``'s
samples, with the file read and parsed by a child process while the importing
process stores (issue 15's import speed; docs/HEALTH_IMPORT.md, "The parser in
a process of its own").

Why a process: lxml calls the parser's target with the GIL held, so in one
process the parse and the store take turns on one core, and the import cannot
go faster than their sum. In a child, the parse runs on the other core.

The child (``python -m kares.protocols.applehealth_child PATH CHUNK``) runs the
very code ``read_export_columns`` runs (``applehealth._ColumnBody`` fed by
``_body_parser`` after ``_check_prolog``), and after each chunk fed writes the
rows that chunk made to its standard output, as they are (the dates as
written), with the progress so far: a frame of four bytes of length and a
``marshal`` of ``(kind, rows, stages, values, progress, fault)``. Kind "rows"
is a chunk's; "end" is the last, the file read whole; "fault" carries the
file's ``ExportError`` (code, message) after the rows of every chunk before the
one that failed, exactly what ``read_export_columns`` yields before it raises.
The parent (``read_export_columns_apart``) puts the rows in a ``_ColumnBody``
of its own and reads their dates, cuts the batches and counts as
``read_export_columns`` does: the same batches, the same progress, the same
faults (the tests run both on the same files).

What is in flight is bounded: a thread of the parent takes frames off the
pipe as they come and holds at most ``AHEAD`` of them, and the child waits on
the pipe when they are not taken. The child imports the parser and nothing of
the server, and it is ended however the parent's reading ends (closed early,
a fault, an error).
"""

from __future__ import annotations

import marshal
import os
import queue
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Generator, Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from kares.protocols.applehealth import (
    CHUNK,
    ExportError,
    OnProgress,
    Progress,
    SampleColumns,
    _body_parser,
    _check_prolog,
    _close,
    _ColumnBody,
    _feed,
    _open,
)

__all__ = ["ReaderFailed", "read_export_columns_apart"]

AHEAD = 8  # frames (chunks' rows, ~0.3 MB each) read ahead of the import
_SRC = str(Path(__file__).resolve().parents[2])  # the tree this module is in


class ReaderFailed(RuntimeError):
    """The child ended without saying how the file ended (killed, out of
    memory, a bug): not the file's fault."""


# --- the child ------------------------------------------------------------------------------


def _peak_kb() -> int | None:
    """This process's peak resident memory in kB (VmHWM: of this program alone;
    getrusage's figure can carry the parent's, from before the exec)."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _progress(body: _ColumnBody, prog: Progress) -> tuple[Any, ...]:
    return (
        prog.bytes_read,
        prog.bytes_total,
        body.records,
        dict(body.skipped),
        dict(body.invalid),
        prog.export_date.isoformat() if prog.export_date is not None else None,
        prog.locale,
        _peak_kb(),
    )


def _child(path: str, chunk: int, out: IO[bytes]) -> None:
    prog = Progress()
    body = _ColumnBody(prog)

    def send(kind: str, fault: tuple[str, str] | None = None) -> None:
        frame = marshal.dumps(
            (kind, body.rows, body.stages, body.values, _progress(body, prog), fault)
        )
        out.write(len(frame).to_bytes(4, "little"))
        out.write(frame)
        out.flush()
        body.rows, body.stages, body.values = [], {}, {}

    try:
        with _open(path) as (stream, total):
            prog.bytes_total = total
            head = _check_prolog(stream, prog, chunk)
            parser = _body_parser(body)
            for data in head:
                _feed(parser, data)
            send("rows")
            while True:
                data = stream.read(chunk)
                if not data:
                    break
                prog.bytes_read += len(data)
                _feed(parser, data)
                send("rows")
            _close(parser)
            send("rows")
        send("end")
    except ExportError as exc:
        # the rows of the step that failed: read_export yields none of them
        body.rows, body.stages, body.values = [], {}, {}
        send("fault", (exc.code, exc.message))


def main() -> None:
    # Ctrl-C at a terminal reaches the whole process group: the parent stops
    # the import and ends this process; no second traceback from here
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    path, chunk = sys.argv[1], int(sys.argv[2])
    try:
        _child(path, chunk, sys.stdout.buffer)
    except BrokenPipeError:  # the parent stopped reading: nothing more to do
        os._exit(0)


# --- the parent -----------------------------------------------------------------------------


def _read_exactly(f: IO[bytes], n: int) -> bytes | None:
    parts: list[bytes] = []
    while n:
        got = f.read(n)
        if not got:
            return None
        parts.append(got)
        n -= len(got)
    return b"".join(parts)


class _Frames:
    """The child's frames, read from the pipe by a thread of their own as they
    come (up to ``AHEAD`` waiting), so that the child parses on while this
    process stores: the import reads only while it cuts a batch."""

    def __init__(self, f: IO[bytes]) -> None:
        self._f = f
        self._q: queue.Queue[bytes | None] = queue.Queue(AHEAD)
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._pull, name="applehealth-frames", daemon=True)
        self._t.start()

    def _put(self, frame: bytes | None) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(frame, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _pull(self) -> None:
        f = self._f
        try:
            while True:
                size = _read_exactly(f, 4)
                frame = None if size is None else _read_exactly(f, int.from_bytes(size, "little"))
                if not self._put(frame) or frame is None:
                    return
        except (OSError, ValueError):  # the pipe failed under it: as if the child had ended
            self._put(None)

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        while True:
            frame = self._q.get()
            if frame is None:
                return
            yield marshal.loads(frame)  # noqa: S302 - our own child's frames

    def close(self) -> None:
        """Stop reading (the child is ended first: the pipe then ends)."""
        self._stop.set()
        self._t.join()


def read_export_columns_apart(
    path: str | os.PathLike[str],
    *,
    batch: int,
    progress: Progress | None = None,
    on_progress: OnProgress | None = None,
    chunk: int = CHUNK,
) -> Generator[SampleColumns, None, None]:
    """``read_export_columns(path, ...)``, the file parsed by a child process
    (see the module's doc). Raises ``ExportError`` as it does, and
    ``ReaderFailed`` when the child ends without a word on the file's end."""
    if batch < 1:
        raise ValueError("batch must be at least 1")
    prog = progress if progress is not None else Progress()
    # the parser needs no setting, key or database: none of the KARES_* values
    # (the data keys among them) go to the process that reads outside input
    env = {k: v for k, v in os.environ.items() if not k.startswith("KARES_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_SRC, env.get("PYTHONPATH")) if p)
    proc = subprocess.Popen(  # noqa: S603 - this interpreter, this module, a path
        [sys.executable, "-m", "kares.protocols.applehealth_child", os.fspath(path), str(chunk)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None
    body = _ColumnBody(prog)  # the rows sent, their dates read here (settle)
    theirs: dict[str, Any] = {"records": 0, "skipped": {}, "invalid": {}}

    def sync() -> None:
        prog.records = theirs["records"]
        prog.skipped = Counter(theirs["skipped"])
        # the child's refusals, and those of the dates read here
        prog.invalid = Counter(theirs["invalid"]) + Counter(body.invalid)

    def take(n: int) -> Iterator[SampleColumns]:
        out = body.cut(n)
        sync()
        prog.samples += len(out)
        yield out

    frames = _Frames(proc.stdout)
    try:
        ended = False
        for kind, rows, stages, values, p, fault in frames:
            base = len(body.rows)
            body.rows.extend(rows)
            if stages:
                body.stages.update({base + i: x for i, x in stages.items()})
            if values:
                body.values.update({base + i: y for i, y in values.items()})
            (prog.bytes_read, prog.bytes_total, theirs["records"], theirs["skipped"]) = p[:4]
            theirs["invalid"] = p[4]
            prog.export_date = datetime.fromisoformat(p[5]) if p[5] is not None else None
            prog.locale = p[6]
            prog.reader_peak_kb = p[7]
            body.settle()
            while len(body) >= batch:
                yield from take(batch)
            sync()
            if kind == "rows":
                if on_progress is not None:
                    on_progress(prog)
                continue
            if len(body):
                yield from take(len(body))
            if kind == "fault":
                raise ExportError(*fault)
            ended = True
            break
        if not ended:
            code = proc.wait()
            raise ReaderFailed(f"The export's reader process ended early (exit status {code}).")
    finally:
        # however the reading ends: the child first (its end ends the pipe,
        # and so the thread reading it), then the pipe
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        frames.close()
        proc.stdout.close()
    prog.done = True
    if on_progress is not None:
        on_progress(prog)


if __name__ == "__main__":
    main()
