"""The report as CSV, and the project's one CSV writer (formula-safe)."""

from __future__ import annotations

import csv
import io

import pytest

from connector import report as rpt
from connector.bounces import BounceType
from connector.report.render_csv import CsvWriter, csv_text, write_csv
from tests.report.data import FORMULA, NOW, WEEK, Db, assert_csv_matches_json


async def test_csv_parses_to_the_same_rows_as_the_json(report: rpt.Report) -> None:
    assert_csv_matches_json(report)
    header = next(csv.reader(io.StringIO(rpt.render_csv(report))))
    assert header[:4] == ["contact_id", "emails", "total", "Hard Bounce"]


async def test_csv_neutralises_formulas(report: rpt.Report) -> None:
    cells = [c for row in csv.reader(io.StringIO(rpt.render_csv(report))) for c in row]
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@")]
    assert f"'{FORMULA}" in cells
    assert "'-mallory@example.com" in cells
    assert rpt.csv_safe("@SUM(A1)") == "'@SUM(A1)"
    assert rpt.csv_safe("plain") == "plain"


@pytest.mark.parametrize(
    "value",
    [
        '=HYPERLINK("x")@evil.com',
        "-2+3@x.com",
        "+1@x.com",
        "@SUM(1)",
        "\t=1",
        "\r=1",
        "\tplain",
        "  =1+1",
        " \n-cmd",
        "\u00a0@SUM(1)",
    ],
)
def test_csv_safe_guards_every_formula_start(value: str) -> None:
    assert rpt.csv_safe(value) == "'" + value


@pytest.mark.parametrize("value", ["a@x.com", "", "'=already quoted", "1-2", "x=1", "ÿ"])
def test_csv_safe_leaves_plain_text_alone(value: str) -> None:
    assert rpt.csv_safe(value) == value


def test_csv_writer_takes_sequences_and_mappings_and_parses_back() -> None:
    hostile = ['=HYPERLINK("x")@evil.com', "-2+3@x.com", "@SUM(1)", "\t=1", 'a,"b"\r\nc']
    out = io.StringIO(newline="")
    writer = CsvWriter(out, ["address", "n"])
    writer.writeheader()
    writer.writerow([hostile[0], 1])
    writer.writerow({"address": hostile[1]})
    writer.writerows([{"address": value, "n": None} for value in hostile[2:]])
    rows = list(csv.reader(io.StringIO(out.getvalue(), newline="")))
    assert rows[0] == ["address", "n"]
    assert [r[0] for r in rows[1:]] == ["'" + v for v in hostile[:4]] + [hostile[4]]
    assert [r[1] for r in rows[1:]] == ["1", "", "", "", ""]
    with pytest.raises(ValueError, match="unknown CSV column"):
        writer.writerow({"adress": "typo"})


def test_csv_text_and_write_csv_agree() -> None:
    out = io.StringIO(newline="")
    write_csv(["a"], [["=1"], ["x"]], out)
    assert out.getvalue() == csv_text(["a"], [["=1"], ["x"]]) == "a\r\n'=1\r\nx\r\n"


async def test_hostile_addresses_and_tags_in_the_report_csv(db: Db) -> None:
    hostile = ['=HYPERLINK("x")@evil.com', "-2+3@x.com", "@SUM(1)", "\t=1"]
    for index, value in enumerate(hostile):
        event = await db.event(1, str(100 + index), value, BounceType.HARD_BOUNCE)
        await db.step(event, str(100 + index), f"tag_add:{value}")
    built = await rpt.build_report(db.store, WEEK, NOW)
    rows = list(csv.DictReader(io.StringIO(rpt.render_csv(built), newline="")))
    assert [(r["emails"], r["tags"]) for r in rows] == [("'" + v, "'" + v) for v in hostile]
    assert_csv_matches_json(built)
