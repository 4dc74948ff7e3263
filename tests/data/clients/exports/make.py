"""Regenerate the real exports in this folder (not run by CI or the tests).

One synthetic walk (a few hundred points, invented coordinates, fixed seed) is
written out by real, maintained software installed on this machine, and each
tool's own output is kept as it wrote it:

- GPSBabel (Debian ``gpsbabel``): GPX 1.0, GPX 1.1 and GeoJSON, from its
  ``unicsv`` input;
- GDAL's ``ogr2ogr`` (Debian ``gdal-bin``): GPX from a CSV, and GeoJSON from
  GPSBabel's GPX 1.1 (its ``track_points`` layer, the usual GPX-to-GeoJSON step);
- the OwnTracks Recorder: ``ot-recorder`` is fed the walk as OwnTracks
  location messages over HTTP ``POST /pub`` (what the apps send), and ``ocat``
  exports its store as GPX, GeoJSON and JSON;
- Python's ``gpxpy`` (the version in Kares's .venv): GPX 1.1.

Run from the repository root with the tools on PATH (and the Recorder built
in $OT_RECORDER, default ~/otbench/recorder):

    .venv/bin/python tests/data/clients/exports/make.py

It prints each tool's version; README.md beside it records what made the
committed files. The walk: 07:30:00Z on 2024-05-18, one point every 5 s,
100 points walking, 60 standing still (a stop at a cafe), 80 walking; the
200th point (index 199) is a GPS jump 3 km off; a named waypoint at the stop
has no time (where the format can carry a waypoint)."""

from __future__ import annotations

import csv
import json
import math
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import gpxpy
import gpxpy.gpx

HERE = Path(__file__).resolve().parent
START = datetime(2024, 5, 18, 7, 30, tzinfo=UTC)
STEP_S = 5
GLITCH = 199
CAFE = ("Cafe", "Where we stopped")


@dataclass
class Pt:
    t: datetime
    lat: float
    lon: float
    ele: float
    speed: float  # m/s
    course: float  # degrees
    acc: int  # metres, as a phone reports it


def walk() -> list[Pt]:
    rnd = random.Random(20240518)
    lat, lon, heading = 30.25900, 120.14800, 70.0
    m_lat = 1 / 111_320
    m_lon = 1 / (111_320 * math.cos(math.radians(lat)))
    pts: list[Pt] = []
    stop_at: tuple[float, float] = (0.0, 0.0)
    for i in range(240):
        t = START + timedelta(seconds=i * STEP_S)
        moving = not 100 <= i < 160
        if moving:
            heading += rnd.uniform(-8, 8)
            v = rnd.uniform(1.2, 1.5)
            lat += v * STEP_S * math.cos(math.radians(heading)) * m_lat
            lon += v * STEP_S * math.sin(math.radians(heading)) * m_lon
            plat, plon = lat, lon
        else:
            if i == 100:
                stop_at = (lat, lon)
            v = 0.0
            plat = stop_at[0] + rnd.uniform(-4, 4) * m_lat
            plon = stop_at[1] + rnd.uniform(-4, 4) * m_lon
        jitter = (rnd.uniform(-2, 2) * m_lat, rnd.uniform(-2, 2) * m_lon) if moving else (0, 0)
        p = Pt(
            t=t,
            lat=round(plat + jitter[0], 6),
            lon=round(plon + jitter[1], 6),
            ele=round(12 + 3 * math.sin(i / 40) + rnd.uniform(-0.5, 0.5), 1),
            speed=round(v, 2),
            course=round(heading % 360, 1),
            acc=rnd.choice([4, 5, 6, 8]) if moving else rnd.choice([8, 10, 12]),
        )
        if i == GLITCH:  # a jump of about 3 km for one point
            p.lat, p.lon = round(p.lat + 3000 * m_lat, 6), p.lon
        pts.append(p)
    return pts


def stop_place(pts: list[Pt]) -> tuple[float, float]:
    inside = pts[100:160]
    return (
        round(sum(p.lat for p in inside) / len(inside), 6),
        round(sum(p.lon for p in inside) / len(inside), 6),
    )


def run(cmd: list[str], env: dict[str, str] | None = None) -> str:
    print("$", " ".join(cmd))
    return subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout


def gpsbabel(pts: list[Pt], tmp: Path) -> None:
    trk, wpt = tmp / "track.csv", tmp / "waypoint.csv"
    with trk.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["lat", "lon", "ele", "speed", "course", "hdop", "sat", "utc_d", "utc_t"])
        for p in pts:
            w.writerow([p.lat, p.lon, p.ele, p.speed, p.course, round(p.acc / 5, 1), 9,
                        p.t.strftime("%Y/%m/%d"), p.t.strftime("%H:%M:%S")])  # fmt: skip
    with wpt.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["lat", "lon", "name", "desc"])
        w.writerow([*stop_place(pts), *CAFE])
    env = {**os.environ, "GPSBABEL_FREEZE_TIME": "y"}  # its own creation time: 1970, not now
    inputs = ["-i", "unicsv", "-f", str(wpt), "-t", "-i", "unicsv", "-f", str(trk)]
    for out, fmt in [
        ("gpx-gpsbabel-1.0.gpx", "gpx,gpxver=1.0"),
        ("gpx-gpsbabel-1.1.gpx", "gpx,gpxver=1.1"),
        ("geojson-gpsbabel.geojson", "geojson"),
    ]:
        run(["gpsbabel", *inputs, "-o", fmt, "-F", str(HERE / out)], env=env)


def gdal(pts: list[Pt], tmp: Path) -> None:
    src = tmp / "track_points.csv"
    with src.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["track_fid", "track_seg_id", "lat", "lon", "ele", "time", "hdop", "sat"])
        for p in pts:
            w.writerow([0, 0, p.lat, p.lon, p.ele, p.t.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        round(p.acc / 5, 1), 9])  # fmt: skip
    csv_in = ["-oo", "X_POSSIBLE_NAMES=lon", "-oo", "Y_POSSIBLE_NAMES=lat",
              "-oo", "KEEP_GEOM_COLUMNS=NO", "-oo", "AUTODETECT_TYPE=YES"]  # fmt: skip
    for name in ("gpx-gdal-ogr2ogr.gpx", "geojson-gdal-ogr2ogr.geojson"):
        (HERE / name).unlink(missing_ok=True)
    run(["ogr2ogr", "-f", "GPX", str(HERE / "gpx-gdal-ogr2ogr.gpx"), str(src), *csv_in,
         "-nln", "track_points"])  # fmt: skip
    run(["ogr2ogr", "-f", "GeoJSON", str(HERE / "geojson-gdal-ogr2ogr.geojson"),
         str(HERE / "gpx-gpsbabel-1.1.gpx"), "track_points"])  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def recorder(pts: list[Pt], tmp: Path) -> None:
    src = Path(os.environ.get("OT_RECORDER", Path.home() / "otbench" / "recorder"))
    store = tmp / "store"
    store.mkdir()
    run([str(src / "ot-recorder"), "-S", str(store), "--initialize"])
    port = free_port()
    proc = subprocess.Popen(
        [str(src / "ot-recorder"), "-S", str(store), "--norevgeo", "--http-host", "127.0.0.1",
         "--http-port", str(port), "--doc-root", str(src / "docroot")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/pub"
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/0/version", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        for p in pts:
            # an OwnTracks for Android location message in HTTP mode (vel in km/h)
            msg = {"_type": "location", "acc": p.acc, "alt": round(p.ele), "batt": 81,
                   "bs": 1, "cog": round(p.course), "conn": "m", "created_at": int(p.t.timestamp()),
                   "lat": p.lat, "lon": p.lon, "m": 1, "t": "u", "tid": "jp",
                   "tst": int(p.t.timestamp()), "vac": 3, "vel": round(p.speed * 3.6)}  # fmt: skip
            req = urllib.request.Request(
                url,
                data=json.dumps(msg).encode(),
                headers={"Content-Type": "application/json", "X-Limit-U": "jane",
                         "X-Limit-D": "phone"},
            )  # fmt: skip
            urllib.request.urlopen(req, timeout=5).read()
    finally:
        proc.terminate()
        proc.wait(10)
    day = ["-F", START.strftime("%Y-%m-%d"), "-T", (START + timedelta(days=1)).strftime("%Y-%m-%d")]
    ocat = [str(src / "ocat"), "-S", str(store), "-u", "jane", "-d", "phone", *day]
    for out, fmt in [
        ("gpx-owntracks-recorder.gpx", "gpx"),
        ("geojson-owntracks-recorder.geojson", "geojson"),
        ("json-owntracks-recorder.json", "json"),
    ]:
        (HERE / out).write_text(run([*ocat, "--format", fmt]))


def with_gpxpy(pts: list[Pt]) -> None:
    doc = gpxpy.gpx.GPX()
    doc.creator = f"gpxpy {gpxpy.__version__}"
    cafe = stop_place(pts)
    doc.waypoints.append(gpxpy.gpx.GPXWaypoint(cafe[0], cafe[1], name=CAFE[0], description=CAFE[1]))
    track = gpxpy.gpx.GPXTrack(name="Saturday walk")
    seg = gpxpy.gpx.GPXTrackSegment()
    for p in pts:
        seg.points.append(gpxpy.gpx.GPXTrackPoint(p.lat, p.lon, elevation=p.ele, time=p.t))
    track.segments.append(seg)
    doc.tracks.append(track)
    (HERE / "gpx-gpxpy.gpx").write_text(doc.to_xml(version="1.1"))


def main() -> None:
    pts = walk()
    print(run(["gpsbabel", "-V"]).strip())
    print(run(["ogr2ogr", "--version"]).strip())
    src = Path(os.environ.get("OT_RECORDER", Path.home() / "otbench" / "recorder"))
    print(run([str(src / "ocat"), "-v"]).strip().splitlines()[0])
    print("gpxpy", gpxpy.__version__)
    tmp = Path(tempfile.mkdtemp(prefix="kares-exports-"))
    try:
        gpsbabel(pts, tmp)
        gdal(pts, tmp)
        recorder(pts, tmp)
        with_gpxpy(pts)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
