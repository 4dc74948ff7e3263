"""Synthetic Apple Health exports, written the way the Health app writes them.

``write_export(path, records)`` streams an ``export.xml`` of ``records`` top-level
elements (``Record``, ``Correlation``, ``Workout``, ``ActivitySummary``) to disk
without holding them in memory, with the internal DTD of HealthKit export
version 14, the ``ExportDate`` and ``Me`` elements, device strings, metadata
entries and heart-rate-variability beat lists, in a mix of types close to a
year of an iPhone with an Apple Watch: mostly heart rate, steps, distance and
energy, some types the import skips, and now and then a blood-pressure
correlation (whose two inner records Apple also writes at the top level), a
sleep stage, a workout, an activity summary and a fall. ``write_zip`` wraps it
in the archive layout of the Health app (``apple_health_export/export.xml``
beside ``export_cda.xml``).

It returns what it wrote per kind, so a test can compare the parse against it.
The benchmark (bench/bench_applehealth.py) uses it for its 100k/1M/3M files.
"""

from __future__ import annotations

import io
import random
import zipfile
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import IO

# The internal subset HealthKit (export version 14) writes at the head of every
# export.xml, element for element (the part of it a parser has to get past).
DTD = """<!DOCTYPE HealthData [
<!-- HealthKit Export Version: 14 -->
<!ELEMENT HealthData (ExportDate,Me,(Record|Correlation|Workout|ActivitySummary|ClinicalRecord|Audiogram|VisionPrescription)*)>
<!ATTLIST HealthData
  locale CDATA #REQUIRED
>
<!ELEMENT ExportDate EMPTY>
<!ATTLIST ExportDate
  value CDATA #REQUIRED
>
<!ELEMENT Me EMPTY>
<!ATTLIST Me
  HKCharacteristicTypeIdentifierDateOfBirth                   CDATA #REQUIRED
  HKCharacteristicTypeIdentifierBiologicalSex                 CDATA #REQUIRED
  HKCharacteristicTypeIdentifierBloodType                     CDATA #REQUIRED
  HKCharacteristicTypeIdentifierFitzpatrickSkinType           CDATA #REQUIRED
  HKCharacteristicTypeIdentifierCardioFitnessMedicationsUse   CDATA #REQUIRED
>
<!ELEMENT Record ((MetadataEntry|HeartRateVariabilityMetadataList)*)>
<!ATTLIST Record
  type          CDATA #REQUIRED
  unit          CDATA #IMPLIED
  value         CDATA #IMPLIED
  sourceName    CDATA #REQUIRED
  sourceVersion CDATA #IMPLIED
  device        CDATA #IMPLIED
  creationDate  CDATA #IMPLIED
  startDate     CDATA #REQUIRED
  endDate       CDATA #REQUIRED
>
<!-- Note: Any Records that appear as children of a correlation also appear as top-level records in this document. -->
<!ELEMENT Correlation ((MetadataEntry|Record)*)>
<!ATTLIST Correlation
  type          CDATA #REQUIRED
  sourceName    CDATA #REQUIRED
  sourceVersion CDATA #IMPLIED
  device        CDATA #IMPLIED
  creationDate  CDATA #IMPLIED
  startDate     CDATA #REQUIRED
  endDate       CDATA #REQUIRED
>
<!ELEMENT Workout ((MetadataEntry|WorkoutEvent|WorkoutRoute|WorkoutStatistics)*)>
<!ATTLIST Workout
  workoutActivityType   CDATA #REQUIRED
  duration              CDATA #IMPLIED
  durationUnit          CDATA #IMPLIED
  totalDistance         CDATA #IMPLIED
  totalDistanceUnit     CDATA #IMPLIED
  totalEnergyBurned     CDATA #IMPLIED
  totalEnergyBurnedUnit CDATA #IMPLIED
  sourceName            CDATA #REQUIRED
  sourceVersion         CDATA #IMPLIED
  device                CDATA #IMPLIED
  creationDate          CDATA #IMPLIED
  startDate             CDATA #REQUIRED
  endDate               CDATA #REQUIRED
>
<!ELEMENT WorkoutActivity ((MetadataEntry)*)>
<!ATTLIST WorkoutActivity
  uuid                 CDATA #REQUIRED
  startDate            CDATA #REQUIRED
  endDate              CDATA #IMPLIED
  duration             CDATA #IMPLIED
  durationUnit         CDATA #IMPLIED
>
<!ELEMENT WorkoutEvent ((MetadataEntry)*)>
<!ATTLIST WorkoutEvent
  type                 CDATA #REQUIRED
  date                 CDATA #REQUIRED
  duration             CDATA #IMPLIED
  durationUnit         CDATA #IMPLIED
>
<!ELEMENT WorkoutStatistics EMPTY>
<!ATTLIST WorkoutStatistics
  type                 CDATA #REQUIRED
  startDate            CDATA #REQUIRED
  endDate              CDATA #REQUIRED
  average              CDATA #IMPLIED
  minimum              CDATA #IMPLIED
  maximum              CDATA #IMPLIED
  sum                  CDATA #IMPLIED
  unit                 CDATA #IMPLIED
>
<!ELEMENT WorkoutRoute ((MetadataEntry|FileReference)*)>
<!ATTLIST WorkoutRoute
  sourceName    CDATA #REQUIRED
  sourceVersion CDATA #IMPLIED
  device        CDATA #IMPLIED
  creationDate  CDATA #IMPLIED
  startDate     CDATA #REQUIRED
  endDate       CDATA #REQUIRED
>
<!ELEMENT FileReference EMPTY>
<!ATTLIST FileReference
  path CDATA #REQUIRED
>
<!ELEMENT ActivitySummary EMPTY>
<!ATTLIST ActivitySummary
  dateComponents           CDATA #IMPLIED
  activeEnergyBurned       CDATA #IMPLIED
  activeEnergyBurnedGoal   CDATA #IMPLIED
  activeEnergyBurnedUnit   CDATA #IMPLIED
  appleMoveTime            CDATA #IMPLIED
  appleMoveTimeGoal        CDATA #IMPLIED
  appleExerciseTime        CDATA #IMPLIED
  appleExerciseTimeGoal    CDATA #IMPLIED
  appleStandHours          CDATA #IMPLIED
  appleStandHoursGoal      CDATA #IMPLIED
>
<!ELEMENT MetadataEntry EMPTY>
<!ATTLIST MetadataEntry
  key   CDATA #REQUIRED
  value CDATA #REQUIRED
>
<!-- Note: Heart Rate Variability records captured by Apple Watch may include an associated list of instantaneous beats-per-minute readings. -->
<!ELEMENT HeartRateVariabilityMetadataList (InstantaneousBeatsPerMinute*)>
<!ELEMENT InstantaneousBeatsPerMinute EMPTY>
<!ATTLIST InstantaneousBeatsPerMinute
  bpm  CDATA #REQUIRED
  time CDATA #REQUIRED
>
<!ELEMENT ClinicalRecord EMPTY>
<!ATTLIST ClinicalRecord
  type              CDATA #REQUIRED
  identifier        CDATA #REQUIRED
  sourceName        CDATA #REQUIRED
  sourceURL         CDATA #REQUIRED
  fhirVersion       CDATA #REQUIRED
  receivedDate      CDATA #REQUIRED
  resourceFilePath  CDATA #REQUIRED
>
]>
"""

HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n' + DTD

Q = "HKQuantityTypeIdentifier"
C = "HKCategoryTypeIdentifier"
WATCH = "Ann\u2019s Apple\u00a0Watch"
PHONE = "Ann\u2019s iPhone"
WATCH_DEVICE = (
    "&lt;&lt;HKDevice: 0x2830a{n:04x}&gt;, name:Apple Watch, manufacturer:Apple Inc., "
    "model:Watch, hardware:Watch6,2, software:10.1&gt;"
)
PHONE_DEVICE = (
    "&lt;&lt;HKDevice: 0x2831b{n:04x}&gt;, name:iPhone, manufacturer:Apple Inc., "
    "model:iPhone, hardware:iPhone14,5, software:17.1&gt;"
)
SLEEP_STAGES = (
    "HKCategoryValueSleepAnalysisInBed",
    "HKCategoryValueSleepAnalysisAsleepCore",
    "HKCategoryValueSleepAnalysisAsleepDeep",
    "HKCategoryValueSleepAnalysisAsleepREM",
    "HKCategoryValueSleepAnalysisAwake",
    "HKCategoryValueSleepAnalysisAsleepUnspecified",
)
TZ = timezone(timedelta(hours=8))


def hk_date(t: datetime) -> str:
    """A date as export.xml writes it: local time and a +HHMM offset after a space."""
    return t.strftime("%Y-%m-%d %H:%M:%S %z")


class _Writer:
    def __init__(self, out: IO[str], rnd: random.Random) -> None:
        self.out = out
        self.r = rnd
        self.n = 0
        self.t = datetime(2025, 1, 1, 0, 0, tzinfo=UTC).astimezone(TZ)
        self.wrote: Counter[str] = Counter()
        self.top = 0  # top-level elements written

    def record(
        self,
        kind: str,
        unit: str | None,
        value: str | None,
        *,
        watch: bool = True,
        seconds: int = 0,
        children: str = "",
        indent: str = " ",
    ) -> str:
        self.n += 1
        src, dev = (WATCH, WATCH_DEVICE) if watch else (PHONE, PHONE_DEVICE)
        start = hk_date(self.t)
        end = hk_date(self.t + timedelta(seconds=seconds))
        created = hk_date(self.t + timedelta(seconds=seconds + 7))
        u = f' unit="{unit}"' if unit is not None else ""
        v = f' value="{value}"' if value is not None else ""
        head = (
            f'{indent}<Record type="{kind}" sourceName="{src}" sourceVersion="10.1" '
            f'device="{dev.format(n=self.n & 0xFFFF)}"{u} creationDate="{created}" '
            f'startDate="{start}" endDate="{end}"{v}'
        )
        if not children:
            return head + "/>\n"
        return f"{head}>\n{children}{indent}</Record>\n"

    def one(self) -> None:
        r = self.r
        self.t += timedelta(seconds=r.randint(20, 90))
        x = r.random()
        w = self.out.write
        if x < 0.22:
            meta = f'  <MetadataEntry key="HKMetadataKeyHeartRateMotionContext" value="{r.randint(0, 2)}"/>\n'
            w(self.record(Q + "HeartRate", "count/min", str(r.randint(52, 140)), children=meta))
            self.wrote["heart_rate"] += 1
        elif x < 0.40:
            w(
                self.record(
                    Q + "StepCount",
                    "count",
                    str(r.randint(5, 900)),
                    watch=r.random() < 0.5,
                    seconds=r.randint(60, 600),
                )
            )
            self.wrote["steps"] += 1
        elif x < 0.56:
            w(
                self.record(
                    Q + "DistanceWalkingRunning",
                    "km",
                    f"{r.uniform(0.005, 0.7):.6f}",
                    seconds=r.randint(60, 600),
                )
            )
            self.wrote["distance"] += 1
        elif x < 0.74:
            w(
                self.record(
                    Q + "ActiveEnergyBurned",
                    "Cal",
                    f"{r.uniform(0.1, 30):.3f}",
                    seconds=r.randint(60, 600),
                )
            )
            self.wrote["active_energy"] += 1
        elif x < 0.84:
            w(
                self.record(
                    Q + "BasalEnergyBurned",
                    "Cal",
                    f"{r.uniform(0.5, 2):.3f}",
                    seconds=r.randint(60, 600),
                )
            )
            self.wrote["skipped:" + Q + "BasalEnergyBurned"] += 1
        elif x < 0.87:
            w(
                self.record(
                    Q + "FlightsClimbed", "count", str(r.randint(1, 4)), watch=False, seconds=120
                )
            )
            self.wrote["skipped:" + Q + "FlightsClimbed"] += 1
        elif x < 0.90:
            w(
                self.record(
                    C + "AppleStandHour", None, "HKCategoryValueAppleStandHourStood", seconds=3600
                )
            )
            self.wrote["skipped:" + C + "AppleStandHour"] += 1
        elif x < 0.93:
            stage = r.choice(SLEEP_STAGES)
            w(self.record(C + "SleepAnalysis", None, stage, seconds=r.randint(300, 3600)))
            self.wrote["sleep"] += 1
        elif x < 0.957:
            w(self.record(Q + "OxygenSaturation", "%", f"{r.randint(90, 100) / 100:.2f}"))
            self.wrote["spo2"] += 1
        elif x < 0.96:  # a few a day from the watch, each with its beats
            beats = "".join(
                f'    <InstantaneousBeatsPerMinute bpm="{r.randint(55, 90)}" time="8:{i // 60:02d}:{i % 60:02d}.{r.randint(0, 99):02d} AM"/>\n'
                for i in range(r.randint(40, 70))
            )
            kids = f"  <HeartRateVariabilityMetadataList>\n{beats}  </HeartRateVariabilityMetadataList>\n"
            w(
                self.record(
                    Q + "HeartRateVariabilitySDNN",
                    "ms",
                    f"{r.uniform(20, 90):.4f}",
                    seconds=60,
                    children=kids,
                )
            )
            self.wrote["skipped:" + Q + "HeartRateVariabilitySDNN"] += 1
        elif x < 0.975:
            w(self.record(Q + "RestingHeartRate", "count/min", str(r.randint(50, 70))))
            self.wrote["resting_heart_rate"] += 1
        elif x < 0.98:
            w(
                self.record(
                    Q + "BodyTemperature", "degC", f"{r.uniform(36.1, 37.4):.1f}", watch=False
                )
            )
            self.wrote["body_temperature"] += 1
        elif x < 0.985:
            w(self.record(Q + "BodyMass", "kg", f"{r.uniform(60, 70):.1f}", watch=False))
            self.wrote["weight"] += 1
        elif x < 0.99:
            self.blood_pressure()
        elif x < 0.994:
            self.workout()
        elif x < 0.998:
            day = self.t.strftime("%Y-%m-%d")
            w(
                f' <ActivitySummary dateComponents="{day}" activeEnergyBurned="{r.uniform(200, 700):.3f}" '
                'activeEnergyBurnedGoal="500" activeEnergyBurnedUnit="Cal" appleMoveTime="0" '
                f'appleMoveTimeGoal="0" appleExerciseTime="{r.randint(5, 60)}" appleExerciseTimeGoal="30" '
                f'appleStandHours="{r.randint(6, 14)}" appleStandHoursGoal="12"/>\n'
            )
            self.wrote["skipped:ActivitySummary"] += 1
        else:
            w(self.record(Q + "NumberOfTimesFallen", "count", "1"))
            self.wrote["fall"] += 1

    def blood_pressure(self) -> None:
        """A correlation; Apple writes its two records at the top level too (just before)."""
        r = self.r
        sys_v, dia_v = str(r.randint(105, 140)), str(r.randint(65, 90))
        sys_r = self.record(Q + "BloodPressureSystolic", "mmHg", sys_v, watch=False, indent="  ")
        dia_r = self.record(Q + "BloodPressureDiastolic", "mmHg", dia_v, watch=False, indent="  ")
        self.out.write(sys_r[1:] + dia_r[1:])
        when = hk_date(self.t)
        self.out.write(
            f' <Correlation type="HKCorrelationTypeIdentifierBloodPressure" sourceName="{PHONE}" '
            f'sourceVersion="17.1" creationDate="{when}" startDate="{when}" endDate="{when}">\n'
            f"{sys_r}{dia_r} </Correlation>\n"
        )
        self.wrote["blood_pressure"] += 1
        self.wrote["skipped:" + Q + "BloodPressureSystolic"] += 1
        self.wrote["skipped:" + Q + "BloodPressureDiastolic"] += 1

    def workout(self) -> None:
        r = self.r
        mins = r.uniform(15, 60)
        start, end = hk_date(self.t), hk_date(self.t + timedelta(minutes=mins))
        self.out.write(
            f' <Workout workoutActivityType="HKWorkoutActivityTypeWalking" duration="{mins:.6f}" '
            f'durationUnit="min" sourceName="{WATCH}" sourceVersion="10.1" '
            f'device="{WATCH_DEVICE.format(n=self.n & 0xFFFF)}" creationDate="{end}" '
            f'startDate="{start}" endDate="{end}">\n'
            '  <MetadataEntry key="HKIndoorWorkout" value="0"/>\n'
            f'  <WorkoutEvent type="HKWorkoutEventTypeSegment" date="{start}" duration="{mins:.4f}" durationUnit="min"/>\n'
            f'  <WorkoutStatistics type="{Q}ActiveEnergyBurned" startDate="{start}" endDate="{end}" sum="{mins * 5:.3f}" unit="Cal"/>\n'
            f'  <WorkoutStatistics type="{Q}HeartRate" startDate="{start}" endDate="{end}" average="104" minimum="80" maximum="131" unit="count/min"/>\n'
            '  <WorkoutRoute sourceName="Ann\u2019s Apple\u00a0Watch" sourceVersion="10.1" '
            f'creationDate="{end}" startDate="{start}" endDate="{end}">\n'
            f'   <FileReference path="/workout-routes/route_{self.t:%Y-%m-%d_%-I.%M%p}.gpx"/>\n'
            "  </WorkoutRoute>\n"
            " </Workout>\n"
        )
        self.wrote["skipped:Workout"] += 1


def write_to(out: IO[str], records: int, *, seed: int = 15) -> Counter[str]:
    """Write an export.xml of ``records`` top-level elements to ``out``. Returns
    what it wrote: samples per metric, ``skipped:<type>`` per skipped type."""
    w = _Writer(out, random.Random(seed))
    out.write(HEAD)
    out.write('<HealthData locale="en_CN">\n')
    out.write(f' <ExportDate value="{hk_date(datetime(2026, 1, 2, 9, 30, tzinfo=TZ))}"/>\n')
    out.write(
        ' <Me HKCharacteristicTypeIdentifierDateOfBirth="1951-03-08" '
        'HKCharacteristicTypeIdentifierBiologicalSex="HKBiologicalSexFemale" '
        'HKCharacteristicTypeIdentifierBloodType="HKBloodTypeNotSet" '
        'HKCharacteristicTypeIdentifierFitzpatrickSkinType="HKFitzpatrickSkinTypeNotSet" '
        'HKCharacteristicTypeIdentifierCardioFitnessMedicationsUse="None"/>\n'
    )
    while w.top < records:
        w.one()
        w.top = w.wrote.total()
    out.write("</HealthData>\n")
    return w.wrote


def write_export(path: Path, records: int, *, seed: int = 15) -> Counter[str]:
    with open(path, "w", encoding="utf-8", buffering=1 << 20) as out:
        return write_to(out, records, seed=seed)


CDA = (
    '<?xml version="1.0"?>\n<ClinicalDocument xmlns="urn:hl7-org:v3">\n'
    " <title>Health Export CDA</title>\n</ClinicalDocument>\n"
)


def write_zip(path: Path, records: int, *, seed: int = 15) -> Counter[str]:
    """The Health app's archive: ``apple_health_export/export.xml`` (written into the
    zip as a stream) and ``export_cda.xml``."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        with z.open("apple_health_export/export.xml", "w", force_zip64=True) as raw:
            text = io.TextIOWrapper(raw, encoding="utf-8")
            wrote = write_to(text, records, seed=seed)
            text.flush()
            text.detach()
        z.writestr("apple_health_export/export_cda.xml", CDA)
    return wrote
