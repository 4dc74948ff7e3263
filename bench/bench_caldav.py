# ruff: noqa: S603, S607  (fixed local commands)
"""CalDAV side by side with Radicale: both holding the same 10,000 events in one calendar.

What it measures, on ``kares serve`` (SQLite, one process) and on Radicale (its
own ``radicale`` server, filesystem storage), each on 127.0.0.1, one keep-alive
httpx client in this process, the same requests to both:

  sync0   an initial ``sync-collection`` REPORT of the calendar (no token; getetag):
          10,000 responses
  sync10  an incremental ``sync-collection`` with the last token after 10 changes
          (the 10 PUTs are made before the clock starts)
  month   a ``calendar-query`` with a one-month time-range (calendar-data asked)
  put100  100 sequential PUTs of new events (If-None-Match: *)

Each figure is the median of --reps runs (put100: the total of 100 PUTs, per run);
the ratio is Radicale's time over Kares' (above 1: Kares is faster; the target is 2).

The 10,000 events are loaded before any clock: into Kares through the ICS import
(``POST /api/v1/calendars/{id}/import``), into Radicale by a PUT of the
whole calendar file on the collection (its own bulk upload). Both then hold the
same events (checked: the initial sync counts 10,000 on each).

Radicale runs from its own virtualenv, never Kares' (``--radicale-venv``, default
~/caldav-bench/venv; make it with ``python3 -m venv ~/caldav-bench/venv &&
~/caldav-bench/venv/bin/pip install radicale==3.9.0``).

    .venv/bin/python bench/bench_caldav.py --events 10000 --reps 5

Only 127.0.0.1 is used; both servers run under ``timeout`` and are stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import bench_ingest as bi  # noqa: E402

START = datetime(2026, 1, 1, tzinfo=UTC)
SPAN_DAYS = 730
MONTH = (datetime(2026, 6, 1, tzinfo=UTC), datetime(2026, 7, 1, tzinfo=UTC))


def vevent(uid: str, start: datetime, summary: str) -> str:
    end = start + timedelta(hours=1)
    return (
        "BEGIN:VEVENT\r\n"
        f"UID:{uid}\r\n"
        "DTSTAMP:20260101T000000Z\r\n"
        f"DTSTART:{start:%Y%m%dT%H%M%SZ}\r\n"
        f"DTEND:{end:%Y%m%dT%H%M%SZ}\r\n"
        f"SUMMARY:{summary}\r\n"
        "END:VEVENT\r\n"
    )


def vcalendar(body: str) -> str:
    return f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//kares bench//EN\r\n{body}END:VCALENDAR\r\n"


def events(n: int) -> list[tuple[str, datetime]]:
    step = SPAN_DAYS * 86400 / n
    return [(f"bench-{i:06d}", START + timedelta(seconds=int(i * step))) for i in range(n)]


SYNC = (
    '<?xml version="1.0" encoding="utf-8"?><d:sync-collection xmlns:d="DAV:">'
    "<d:sync-token>{token}</d:sync-token><d:sync-level>1</d:sync-level>"
    "<d:prop><d:getetag/></d:prop></d:sync-collection>"
)
QUERY = (
    '<?xml version="1.0" encoding="utf-8"?>'
    '<c:calendar-query xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav">'
    "<d:prop><d:getetag/><c:calendar-data/></d:prop>"
    '<c:filter><c:comp-filter name="VCALENDAR"><c:comp-filter name="VEVENT">'
    '<c:time-range start="{start:%Y%m%dT%H%M%SZ}" end="{end:%Y%m%dT%H%M%SZ}"/>'
    "</c:comp-filter></c:comp-filter></c:filter></c:calendar-query>"
)


@dataclass
class Target:
    name: str
    client: httpx.Client
    calendar: str  # the collection's path, ending in /

    def report(self, body: str, depth: str = "1") -> httpx.Response:
        r = self.client.request(
            "REPORT",
            self.calendar,
            content=body.encode(),
            headers={"Depth": depth, "Content-Type": "application/xml; charset=utf-8"},
        )
        if r.status_code != 207:
            raise RuntimeError(f"{self.name}: REPORT answered {r.status_code}: {r.text[:300]}")
        return r

    def put(self, uid: str, text: str, **headers: str) -> httpx.Response:
        r = self.client.put(
            f"{self.calendar}{uid}.ics",
            content=text.encode(),
            headers={"Content-Type": "text/calendar; charset=utf-8", **headers},
        )
        if r.status_code not in (201, 204):
            raise RuntimeError(f"{self.name}: PUT answered {r.status_code}: {r.text[:300]}")
        return r


def token_of(xml: bytes) -> str:
    from lxml import etree

    root = etree.fromstring(xml)
    return str(root.findtext("{DAV:}sync-token"))


def responses_in(xml: bytes) -> int:
    return xml.count(b"response>") // 2


# --- the servers -------------------------------------------------------------------------------


def start_kares(scratch: Path, hard_limit_s: int) -> tuple[Any, dict[str, Any]]:
    env = bi.kares_env(scratch / "kares", "", "WARNING")
    (scratch / "kares").mkdir()
    kares = str(bi.VENV_BIN / "kares")
    subprocess.run([kares, "migrate"], env=env, check=True, timeout=300, capture_output=True)
    srv = bi.Server(env, hard_limit_s=hard_limit_s)
    srv.wait_ready()
    out = subprocess.run(
        [kares, "demo", "--json", "--url", srv.url],
        env=env,
        check=True,
        timeout=300,
        capture_output=True,
        text=True,
    ).stdout
    member = json.loads(out)["members"][0]
    return srv, member


def start_radicale(venv: Path, scratch: Path, hard_limit_s: int) -> tuple[Any, str]:
    port = bi.free_port()
    storage = scratch / "radicale"
    storage.mkdir()
    conf = scratch / "radicale.conf"
    conf.write_text(
        "[server]\n"
        f"hosts = 127.0.0.1:{port}\n"
        "[auth]\ntype = none\n"
        "[rights]\ntype = owner_only\n"
        f"[storage]\nfilesystem_folder = {storage}\n"
        "[logging]\nlevel = warning\n"
    )
    log = open(scratch / "radicale.log", "ab")
    radicale = [str(venv / "bin" / "python"), "-m", "radicale", "--config", str(conf)]
    proc = subprocess.Popen(
        ["timeout", "-s", "TERM", "-k", "10", str(hard_limit_s), *radicale],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"radicale exited, see {scratch / 'radicale.log'}")
        try:
            httpx.get(url + "/.web/", timeout=2)
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError("radicale did not start")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


# --- loading -----------------------------------------------------------------------------------


def load_kares(url: str, member: dict[str, Any], evs: list[tuple[str, datetime]]) -> Target:
    cd = member["caldav"]
    client = httpx.Client(base_url=url, auth=(cd["username"], cd["password"]), timeout=600)
    cal_id = uuid.uuid4().hex
    home = f"/dav/calendars/{member['account_id']}/"
    mk = (
        '<?xml version="1.0" encoding="utf-8"?><c:mkcalendar xmlns:d="DAV:" '
        'xmlns:c="urn:ietf:params:xml:ns:caldav"><d:set><d:prop>'
        "<d:displayname>Bench</d:displayname></d:prop></d:set></c:mkcalendar>"
    )
    r = client.request("MKCALENDAR", f"{home}{cal_id}/", content=mk.encode())
    if r.status_code != 201:
        raise RuntimeError(f"kares MKCALENDAR: {r.status_code} {r.text[:300]}")
    calendar = r.headers["location"]
    real_id = calendar.rstrip("/").rsplit("/", 1)[1]
    body = vcalendar("".join(vevent(uid, t, f"Event {uid}") for uid, t in evs))
    r = httpx.post(
        f"{url}/api/v1/calendars/{real_id}/import",
        content=body.encode(),
        headers={
            "Authorization": f"Bearer {member['token']}",
            "Content-Type": "text/calendar",
        },
        timeout=600,
    )
    if r.status_code != 200:
        raise RuntimeError(f"kares import: {r.status_code} {r.text[:300]}")
    return Target("kares", client, calendar)


def load_radicale(url: str, evs: list[tuple[str, datetime]]) -> Target:
    client = httpx.Client(base_url=url, auth=("bench", "bench"), timeout=600)
    calendar = "/bench/cal/"
    mk = (
        '<?xml version="1.0" encoding="utf-8"?><c:mkcalendar xmlns:d="DAV:" '
        'xmlns:c="urn:ietf:params:xml:ns:caldav"><d:set><d:prop>'
        "<d:displayname>Bench</d:displayname></d:prop></d:set></c:mkcalendar>"
    )
    r = client.request("MKCALENDAR", calendar, content=mk.encode())
    if r.status_code != 201:
        raise RuntimeError(f"radicale MKCALENDAR: {r.status_code} {r.text[:300]}")
    body = vcalendar("".join(vevent(uid, t, f"Event {uid}") for uid, t in evs))
    r = client.put(calendar, content=body.encode(), headers={"Content-Type": "text/calendar"})
    if r.status_code not in (201, 204):
        raise RuntimeError(f"radicale bulk PUT: {r.status_code} {r.text[:300]}")
    return Target("radicale", client, calendar)


# --- the measurements --------------------------------------------------------------------------


def measure(t: Target, n: int, seq: list[int]) -> dict[str, float]:
    """One run of the four measurements on one server (seconds each)."""
    out: dict[str, float] = {}
    t0 = time.perf_counter()
    first = t.report(SYNC.format(token=""))
    out["sync0"] = time.perf_counter() - t0
    count = responses_in(first.content)
    if count < n:
        raise RuntimeError(f"{t.name}: the initial sync lists {count} of {n} events")
    token = token_of(first.content)
    for _ in range(10):
        i = seq[0] % n
        seq[0] += 1
        uid = f"bench-{i:06d}"
        start = START + timedelta(seconds=int(i * SPAN_DAYS * 86400 / n))
        t.put(uid, vcalendar(vevent(uid, start, f"Changed {seq[0]}")))
    t0 = time.perf_counter()
    inc = t.report(SYNC.format(token=token))
    out["sync10"] = time.perf_counter() - t0
    count = responses_in(inc.content)
    if count < 10:
        raise RuntimeError(f"{t.name}: the incremental sync lists {count} changes, not 10")
    t0 = time.perf_counter()
    month = t.report(QUERY.format(start=MONTH[0], end=MONTH[1]))
    out["month"] = time.perf_counter() - t0
    if responses_in(month.content) == 0:
        raise RuntimeError(f"{t.name}: the month's query found nothing")
    new = []
    for _ in range(100):
        uid = f"new-{uuid.uuid4().hex}"
        new.append((uid, vcalendar(vevent(uid, MONTH[0], "New"))))
    t0 = time.perf_counter()
    for uid, text in new:
        t.put(uid, text, **{"If-None-Match": "*"})
    out["put100"] = time.perf_counter() - t0
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--events", type=int, default=10_000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--radicale-venv", type=Path, default=Path.home() / "caldav-bench" / "venv")
    ap.add_argument("--max-seconds", type=int, default=1800)
    args = ap.parse_args()
    if not (args.radicale_venv / "bin" / "python").exists():
        print(f"no Radicale virtualenv at {args.radicale_venv} (see --help)", file=sys.stderr)
        return 2
    scratch = Path(tempfile.mkdtemp(prefix="caldavbench-"))
    srv = rad = None
    try:
        srv, member = start_kares(scratch, args.max_seconds)
        rad, rad_url = start_radicale(args.radicale_venv, scratch, args.max_seconds)
        evs = events(args.events)
        t0 = time.perf_counter()
        kt = load_kares(srv.url, member, evs)
        k_load = time.perf_counter() - t0
        t0 = time.perf_counter()
        rt = load_radicale(rad_url, evs)
        r_load = time.perf_counter() - t0
        print(f"loaded {args.events} events: kares {k_load:.1f} s, radicale {r_load:.1f} s")
        for tgt in (kt, rt):  # warm up (Radicale builds its item cache on the first read)
            tgt.report(SYNC.format(token=""))
        seq = [0]
        # alternate who goes first, one rep at a time
        k_runs: list[dict[str, float]] = []
        r_runs: list[dict[str, float]] = []
        for rep in range(args.reps):
            pair = [(kt, k_runs), (rt, r_runs)]
            for tgt, runs in pair if rep % 2 == 0 else pair[::-1]:
                runs.append(measure(tgt, args.events, seq))
        print(f"\n{'measure':<8} {'kares ms':>10} {'radicale ms':>12} {'ratio':>7}")
        for key in ("sync0", "sync10", "month", "put100"):
            k = statistics.median(r[key] for r in k_runs) * 1000
            r = statistics.median(x[key] for x in r_runs) * 1000
            print(f"{key:<8} {k:>10.1f} {r:>12.1f} {r / k:>6.1f}x")
        print(
            f"\n(median of {args.reps} runs; ratio = Radicale / Kares; "
            f"Kares: kares serve, SQLite; Radicale 3.9.0, filesystem storage)"
        )
    finally:
        if srv is not None:
            srv.stop()
        if rad is not None:
            stop(rad)
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
