"""Build seatbelts_long.csv: the three killed-or-seriously-injured columns of seatbelts.csv
(drivers, front-seat and rear-seat passengers) as three series in long format.

Run from the repository root: python data/make_seatbelts_long.py
"""

import csv
from pathlib import Path

here = Path(__file__).resolve().parent
rows = list(csv.DictReader(open(here / "seatbelts.csv", newline="")))
with open(here / "seatbelts_long.csv", "w", newline="") as fh:
    out = csv.writer(fh, lineterminator="\n")
    out.writerow(["series", "date", "casualties"])
    for column in ("drivers", "front", "rear"):
        for row in rows:
            out.writerow([column, row["date"], row[column]])
