"""Result writers: the paper's column orders, missing-value footnotes, CSV/JSON round trips, atomic writes."""

from __future__ import annotations

import csv
import json
import math
import os

import numpy as np
import pytest

from osdface.metrics import table
from osdface.metrics.table import (
    mean_scores,
    render_table1,
    render_table2,
    render_table3,
    write_means_json,
    write_per_image_csv,
    write_text_atomic,
)

# The paper's header rows (arrows included), in order.
PAPER_TABLE1 = ["LPIPS↓", "DISTS↓", "MUSIQ↑", "NIQE↓", "Deg.↓", "LMD↓", "FID(FFHQ)↓", "FID(HQ)↓"]
PAPER_TABLE2_METRICS = ["CLIPIQA↑", "MANIQA↑", "MUSIQ↑", "NIQE↓", "FID↓"]
PAPER_TABLE2_DATASETS = ["Wider-Test", "LFW-Test", "WebPhoto-Test"]
PAPER_TABLE3 = ["Step", "Time (s)", "Param (M)", "MACs (G)"]

OSDFACE_T1 = {
    "lpips": 0.3365,
    "dists": 0.1773,
    "musiq": 75.6398,
    "niqe": 3.8840,
    "deg": 60.0708,
    "lmd": 5.2867,
    "fid_ffhq": 45.4150,
    "fid_hq": 17.0617,
}


def _header(md: str) -> list[str]:
    line = next(line for line in md.splitlines() if line.startswith("| "))
    return [c.strip() for c in line.strip("|").split("|")]


def _rows(md: str) -> list[list[str]]:
    lines = [line for line in md.splitlines() if line.startswith("| ")][2:]  # skip header and separator
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines]


def test_table1_column_order_and_values():
    md = render_table1({"OSDFace (paper)": OSDFACE_T1})
    assert _header(md) == ["Method"] + PAPER_TABLE1
    assert _rows(md) == [
        [
            "OSDFace (paper)",
            "0.3365",
            "0.1773",
            "75.6398",
            "3.8840",
            "60.0708",
            "5.2867",
            "45.4150",
            "17.0617",
        ]
    ]
    assert "[^" not in md  # nothing missing, no footnotes


def test_table1_missing_values_get_footnotes():
    ours = {
        "lpips": 0.34,
        "dists": None,
        "musiq": float("nan"),
        "niqe": 3.9,
        "deg": "unavailable: ArcFace weights not found",
        "lmd": "unavailable: FAN weights not found",
    }  # fid_* absent
    reasons = {"ours": {"dists": "pyiqa unavailable: torchvision missing"}}
    md = render_table1({"ours": ours, "paper": OSDFACE_T1}, reasons=reasons)
    row = _rows(md)[0]
    assert row[1] == "0.3400" and row[4] == "3.9000"
    assert row[2] == "–[^1]"  # dists: explicit reason
    assert row[3] == "–[^2]"  # musiq NaN, no reason → "not computed"
    assert row[5].startswith("–[^3]") and row[6].startswith("–[^4]")
    assert row[7] == row[8] == "–[^2]"  # absent → shared "not computed" footnote
    notes = [line for line in md.splitlines() if line.startswith("[^")]
    assert notes[0] == "[^1]: pyiqa unavailable: torchvision missing"
    assert notes[1] == "[^2]: not computed"
    assert notes[2] == "[^3]: unavailable: ArcFace weights not found"
    assert len(notes) == 4


def test_table2_layout():
    paper = {
        "wider": {"clipiqa": 0.7284, "maniqa": 0.5229, "musiq": 74.601, "niqe": 3.7741, "fid_ffhq": 34.648},
        "lfw": {"clipiqa": 0.7203, "maniqa": 0.5493, "musiq": 75.354, "niqe": 3.8710, "fid_ffhq": 44.629},
        "webphoto": {
            "clipiqa": 0.7106,
            "maniqa": 0.5162,
            "musiq": 73.935,
            "niqe": 3.98064,
            "fid_ffhq": 84.597,
        },
    }
    md = render_table2(
        {"OSDFace": paper, "partial": {"lfw": {"niqe": 4.0}}},
        reasons={"partial": {"wider": {"niqe": "folder missing"}}},
    )
    header = _header(md)
    assert header[0] == "Method" and len(header) == 16
    expected = [f"{ds} {m}" for ds in PAPER_TABLE2_DATASETS for m in PAPER_TABLE2_METRICS]
    assert header[1:] == expected
    full, partial = _rows(md)
    assert full[1:6] == ["0.7284", "0.5229", "74.601", "3.7741", "34.648"]
    assert full[-1] == "84.597"
    assert partial[1] == "–[^1]"  # footnotes are numbered in reading order
    assert partial[4] == "–[^2]" and partial[9] == "4.0000"
    assert "[^1]: not computed\n[^2]: folder missing" in md


def test_table3_layout():
    md = render_table3(
        {
            "DiffBIR": {"steps": 50, "time_s": 9.03, "params_m": 3042, "macs_g": 189208},
            "OSDFace": {"steps": 1, "time_s": 0.10, "params_m": 978.4, "macs_g": 2132},
        },
        reasons={"DiffBIR": {}},
    )
    assert _header(md) == ["Method"] + PAPER_TABLE3
    assert _rows(md) == [
        ["DiffBIR", "50", "9.03", "3,042.0", "189,208"],
        ["OSDFace", "1", "0.10", "978.4", "2,132"],
    ]


def test_per_image_csv_round_trip(tmp_path):
    records = [
        {"name": "001", "pred": "p/001.png", "gt": "g/001.png", "psnr": np.float64(31.25), "ssim": 0.9},
        {"name": "002", "pred": "p/002.png", "gt": "g/002.png", "psnr": math.inf, "ssim": None},
        {"name": "003", "pred": "p/003.png", "gt": "g/003.png", "psnr": float("nan"), "ssim": 1 / 3},
    ]
    path = write_per_image_csv(tmp_path / "out" / "per_image.csv", records, ["psnr", "ssim"])
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["name", "pred", "gt", "psnr", "ssim"]
    assert rows[1] == ["001", "p/001.png", "g/001.png", "31.25", "0.9"]
    assert rows[2][3:] == ["inf", ""] and rows[3][3] == "nan"
    assert float(rows[3][4]) == 1 / 3  # full precision


def test_means_and_json(tmp_path):
    records = [{"psnr": 30.0, "niqe": 4.0}, {"psnr": 32.0, "niqe": float("nan")}, {"psnr": math.inf}]
    means = mean_scores(records, ["psnr", "niqe", "lpips"])
    assert means["psnr"] == {"mean": math.inf, "n": 3, "n_missing": 0}
    assert means["niqe"] == {"mean": 4.0, "n": 1, "n_missing": 2}
    assert means["lpips"] == {"mean": None, "n": 0, "n_missing": 3}
    path = write_means_json(
        tmp_path / "metrics.json", means, dataset="CelebA-Test", method="OSDFace", n_images=3
    )
    data = json.loads(path.read_text())  # strict JSON: no bare Infinity/NaN
    assert data["dataset"] == "CelebA-Test" and data["n_images"] == 3
    assert data["metrics"] == {"psnr": "inf", "niqe": 4.0, "lpips": None}
    assert data["details"]["niqe"] == {"n": 1, "n_missing": 2}
    plain = write_means_json(tmp_path / "plain.json", {"fid_hq": np.float32(17.5), "count": np.int64(3)})
    assert json.loads(plain.read_text()) == {"metrics": {"fid_hq": 17.5, "count": 3}}


def test_writes_are_atomic(tmp_path, monkeypatch):
    target = tmp_path / "table.md"
    target.write_text("old")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr("osdface.files.os.replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_text_atomic(target, "new")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["table.md"]  # the temporary file was removed
    monkeypatch.undo()
    table.write_markdown(target, render_table1({"paper": OSDFACE_T1}))
    assert target.read_text().startswith("**Table 1.")
    assert sorted(os.listdir(tmp_path)) == ["table.md"]
