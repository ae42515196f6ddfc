"""``vidinv report`` end to end through the CLI; report.html rendered by headless Chromium shows the plots.

The Chromium test is skipped only where no Chromium binary is installed (CI installs it).
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import cached_detection, require_shared
from vidinv.report.plots import OUTPUT_COLOURS, SOURCE_COLOUR
from vidinv.report.schema import validate

FRAMES = 8


@pytest.fixture(scope="module", autouse=True)
def _shared_detections():
    with cached_detection():
        yield


@pytest.fixture(scope="module")
def cli_report(tmp_path_factory):
    """CLI report of the first 8 frames of greenscreen_frontal.mp4 against a re-encoded copy."""
    from vidinv.cli.main import cli
    from vidinv.io.video import VideoReader, VideoWriter, probe

    src = require_shared("videos") / "greenscreen_frontal.mp4"
    tmp = tmp_path_factory.mktemp("html")
    info = probe(src)
    with VideoWriter(tmp / "greenscreen_frontal_copy.mp4", *info.display_size, fps=info.fps, crf=23) as w:
        for f in VideoReader(src, stop=FRAMES):
            w.write(f.image)
    out = tmp / "report"
    res = CliRunner().invoke(cli, ["report", str(src), str(tmp / "greenscreen_frontal_copy.mp4"), "-o", str(out),
                                   "--max-frames", str(FRAMES), "--embedder", "dlib", "--quiet"],
                             catch_exceptions=False)
    return res, out


def test_cli_writes_a_valid_report(cli_report):
    res, out = cli_report
    assert res.exit_code == 0, res.output
    text = res.output
    assert re.search(r"source greenscreen_frontal\.mp4: 8 frames in [0-9.]+ s = [0-9]+ ms/frame", text)
    assert re.search(r"total: 16 frames in [0-9.]+ s = [0-9]+ ms/frame", text)
    assert "identity consistency [dlib]" in text and "identity similarity [dlib]" in text
    doc = json.loads((out / "report.json").read_text())
    validate(doc)
    c = doc["comparisons"][0]
    # TL-ID / TG-ID printed as in report.json (STIT's mean of ratios), with the network and crops behind them
    ci = c["identity"]["dlib"]
    assert (f"TL-ID [dlib] {ci['tl_id']['value']:.4f} ({FRAMES - 1} adjacent pairs)  TG-ID [dlib] "
            f"{ci['tg_id']['value']:.4f} ({FRAMES * (FRAMES - 1)} ordered pairs)  skipped frames: 0") in text
    assert "from dlib = dlib face-recognition ResNet-29 on aligned 150×150 chips" in text
    assert "insightface on full frames" in text
    assert "CNN fallback off (HOG found no face in 0 frame(s))" in text
    assert c["frames"]["compared"] == FRAMES and c["identity"]["dlib"]["frames_used"] == FRAMES
    assert c["identity"]["dlib"]["similarity"]["mean"] > 0.97
    assert 30 < c["face_crop"]["psnr"]["mean"] < 60 and 0.8 < c["face_crop"]["ssim"]["mean"] <= 1.0
    assert [p["file"] for p in doc["plots"]] == ["identity_c0.png", "quality_c0.png", "consistency_boxplot.png"]


def test_cli_errors_are_reported(tmp_path):
    from vidinv.cli.main import cli

    res = CliRunner().invoke(cli, ["report", str(tmp_path / "missing.mp4"), "-o", str(tmp_path / "r")])
    assert res.exit_code == 1 and "does not exist" in res.output


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        p = shutil.which(name)
        if p:
            return p
    return None


def _screenshot(browser: str, html, png, profile) -> np.ndarray:
    from PIL import Image

    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", f"--screenshot={png}", "--window-size=1200,2000", html.as_uri()]
    subprocess.run(cmd, check=True, timeout=120, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return np.asarray(Image.open(png).convert("RGB")).astype(np.int16)


def _colour_pixels(img: np.ndarray, hex_colour: str, tol: int = 40) -> int:
    rgb = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)], dtype=np.int16)
    return int((np.abs(img - rgb).max(axis=2) <= tol).sum())


def test_report_html_shows_the_plots_in_chromium(cli_report, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("Chromium is not installed here (CI installs it)")
    _, out = cli_report
    html = out / "report.html"
    page = html.read_text()
    assert page.count("data:image/png;base64,") == 3 and "<script" not in page
    shot = _screenshot(browser, html, tmp_path / "page.png", tmp_path / "profile")
    assert shot.shape == (2000, 1200, 3)
    assert shot.std() > 20  # not a blank page
    # the plots' line colours (source blue, output red) are on screen ...
    blue, red = _colour_pixels(shot, SOURCE_COLOUR), _colour_pixels(shot, OUTPUT_COLOURS[0])
    print(f"screenshot: {blue} source-blue and {red} output-red pixels")
    assert blue > 300 and red > 300
    # ... and come from the embedded plots: the same page without its images has none of them
    bare = out / "bare.html"
    bare.write_text(re.sub(r"<img [^>]*>", "", page))
    shot_bare = _screenshot(browser, bare, tmp_path / "bare.png", tmp_path / "profile2")
    assert _colour_pixels(shot_bare, SOURCE_COLOUR) < 20 and _colour_pixels(shot_bare, OUTPUT_COLOURS[0]) < 20
    assert shot_bare.std() > 5  # the tables are still there


def test_cli_cnn_fallback_switch(tmp_path):
    """`vidinv report --cnn-fallback` on a face-free clip: the summary says on how many frames the CNN ran;
    without the flag it did not run and the summary counts the frames HOG missed."""
    from vidinv.cli.main import cli
    from vidinv.io.video import VideoWriter

    rng = np.random.default_rng(17)
    clip = tmp_path / "noise.mp4"
    with VideoWriter(clip, 128, 96, fps=25, crf=18) as w:
        for _ in range(2):
            w.write(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8))
    base = ["report", str(clip), "--embedder", "dlib", "--quiet", "--no-lpips"]
    off = CliRunner().invoke(cli, base + ["-o", str(tmp_path / "off")], catch_exceptions=False)
    on = CliRunner().invoke(cli, base + ["-o", str(tmp_path / "on"), "--cnn-fallback"], catch_exceptions=False)
    assert off.exit_code == 0 and on.exit_code == 0, off.output + on.output
    assert "CNN fallback off (HOG found no face in 2 frame(s))" in off.output
    assert "CNN fallback on 2 frame(s), found a face in 0" in on.output
    assert json.loads((tmp_path / "on" / "report.json").read_text())["videos"][0]["detection"]["cnn_frames"] == 2
