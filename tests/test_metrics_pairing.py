"""Pairing by file stem: unpaired, duplicate and unreadable files are reported, not raised; order is fixed."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
from PIL import Image

from osdface.metrics import pairing
from osdface.metrics.pairing import pair_by_stem


def _png(path: Path, value: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(path)
    return path


def _make_sets(root: Path) -> tuple[Path, Path]:
    pred, gt = root / "restored", root / "gt"
    for name in ["b.png", "a.png", "c.png", "e.png", "e.jpg", "10.png", "2.png"]:
        _png(pred / name)
    for name in ["a.jpg", "b.png", "d.png", "e.png", "f.png", "10.png", "2.png"]:
        _png(gt / name)
    (pred / "d.png").write_bytes(b"not an image")  # unreadable prediction with a ground truth
    (pred / "notes.txt").write_text("ignored: not an image extension")
    return pred, gt


def test_reports_every_kind_of_problem(tmp_path):
    pred, gt = _make_sets(tmp_path)
    result = pair_by_stem(pred, gt)
    assert [(p.name, g.name) for p, g in result.pairs] == [
        ("10.png", "10.png"),
        ("2.png", "2.png"),
        ("a.png", "a.jpg"),
        ("b.png", "b.png"),
    ]
    assert result.names == ["10", "2", "a", "b"]
    assert [p.name for p in result.unpaired_pred] == ["c.png"]
    assert [g.name for g in result.unpaired_gt] == ["f.png"]
    assert [(stem, [p.name for p in paths]) for stem, paths in result.duplicates] == [
        ("e", ["e.jpg", "e.png"])
    ]
    assert [(p.name, "not an image" in reason) for p, reason in result.unreadable] == [("d.png", True)]
    assert not result.ok
    problems = result.problems()
    assert len(problems) == 4
    assert any("c.png: no ground truth" in line for line in problems)
    assert any("f.png: no prediction" in line for line in problems)
    assert any("ambiguous" in line and "e.jpg" in line for line in problems)
    assert any("d.png: unreadable" in line for line in problems)


def test_without_readability_check_pairs_the_bad_file(tmp_path):
    pred, gt = _make_sets(tmp_path)
    result = pair_by_stem(pred, gt, check_readable=False)
    assert "d" in result.names and result.unreadable == []


def test_order_does_not_depend_on_listing_order(tmp_path, monkeypatch):
    pred, gt = _make_sets(tmp_path)
    reference = pair_by_stem(pred, gt)
    real_list_images = pairing.list_images

    def shuffled(inputs):
        paths, problems = real_list_images(inputs)
        random.Random(len(paths)).shuffle(paths)
        return paths, problems

    monkeypatch.setattr(pairing, "list_images", shuffled)
    again = pair_by_stem(pred, gt)
    assert again.pairs == reference.pairs
    assert again.unpaired_pred == reference.unpaired_pred and again.unpaired_gt == reference.unpaired_gt
    assert again.duplicates == reference.duplicates and again.unreadable == reference.unreadable


def test_missing_folders_and_file_lists(tmp_path):
    result = pair_by_stem(tmp_path / "nope", tmp_path / "also-nope")
    assert result.pairs == [] and len(result.input_problems) == 2
    assert (
        result.input_problems[0].startswith("pred: ") and "no such file or folder" in result.input_problems[0]
    )
    files = [_png(tmp_path / "x" / "1.png"), _png(tmp_path / "x" / "2.png")]
    gts = [_png(tmp_path / "y" / "2.png"), _png(tmp_path / "y" / "1.png")]
    ok = pair_by_stem(files, gts)
    assert ok.ok and ok.names == ["1", "2"]
    empty = tmp_path / "empty"
    empty.mkdir()
    res = pair_by_stem(empty, tmp_path / "y")
    assert [g.name for g in res.unpaired_gt] == ["1.png", "2.png"]
    assert any("no image files" in line for line in res.input_problems)
