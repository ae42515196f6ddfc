"""The browser preview (``vidinv ui``, issue 12 item 5) in a real headless Chromium (Selenium + chromedriver),
with the tiny model bundle: load the page, upload a shared clip, see the tracked faces, move the strength
slider, get preview images made with that strength, render, download the video and its report; and every
request the browser made went to the local server (no CDN, fonts or analytics).

Skips only where Chromium or chromedriver is absent (CI installs both: ``.ci/run``)."""
from __future__ import annotations

import io
import json
import shutil
import time
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import require_shared
from PIL import Image
from tiny_bundle import write_tiny_bundle

#: The clip's first frames (a short cut keeps the inversion, render and report within seconds).
CUT_FRAMES = 6
#: Limit of each explicit wait (seconds); the whole test takes far less on an idle machine.
WAIT_S = 240


def _browser() -> tuple[str, str]:
    browser = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        pytest.skip("Chromium and chromedriver are needed (Debian: apt-get install chromium chromium-driver; "
                    "CI installs them)")
    return browser, driver


@pytest.fixture
def clip(tmp_path) -> Path:
    """The first :data:`CUT_FRAMES` frames of ../shared/videos/talking_wink.mp4 (one face, 512x512, 30 fps)."""
    from vidinv.io.video import VideoReader, VideoWriter

    src = require_shared("videos") / "talking_wink.mp4"
    out = tmp_path / "wink_cut.mp4"
    with VideoReader(src, stop=CUT_FRAMES) as r, VideoWriter(out, 512, 512, 30, crf=18) as w:
        for fr in r:
            w.write(fr.image)
    return out


@pytest.fixture
def server(tmp_path, monkeypatch):
    """The app on 127.0.0.1 (a free port) with the tiny bundle as $VIDINV_HOME; the gate off (the tiny
    generator draws no face, so a confidence gate would fade every edit out)."""
    from vidinv.ui.app import launch
    from vidinv.ui.session import UiSettings

    home = tmp_path / "home"
    write_tiny_bundle(home)
    monkeypatch.setenv("VIDINV_HOME", str(home))
    app, url, session = launch(UiSettings(cache_dir=tmp_path / "cache", device="cpu", gate=False), block=False,
                               quiet=True)
    try:
        yield url, session
    finally:
        app.close()


@pytest.fixture
def driver(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    browser, chromedriver = _browser()
    opts = Options()
    opts.binary_location = browser
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,2200"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    d = webdriver.Chrome(service=Service(chromedriver), options=opts)
    try:
        yield d
    finally:
        d.quit()


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as r:  # the local server only (asserted by the caller)
        return r.read()


def test_ui_preview_and_render_in_chromium(clip, server, driver, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    from vidinv.io.video import probe

    url, _session = server
    origin = urllib.parse.urlsplit(url).netloc
    assert urllib.parse.urlsplit(url).hostname == "127.0.0.1"
    wait = WebDriverWait(driver, WAIT_S, poll_frequency=0.2)
    css = lambda sel: driver.find_elements(By.CSS_SELECTOR, sel)  # noqa: E731
    t0 = time.perf_counter()

    # load (the log so far is the browser's own start page: dropped)
    driver.get_log("performance")
    driver.get(url)
    wait.until(lambda d: css("#video-in input[type=file]"))
    assert "Open a video" in css("#status")[0].text
    # the gate setting starts as the server was told (off), so no gate hides the tiny generator's faces
    assert not css("#gate input[type=checkbox]")[0].is_selected()

    # upload: tracking + inversion, then one frame with the track outline and id
    css("#video-in input[type=file]")[0].send_keys(str(clip))
    wait.until(lambda d: "track(s)" in css("#status")[0].text)
    status = css("#status")[0].text
    assert f"{CUT_FRAMES} frames" in status and "1 track(s)" in status and f"#0: {CUT_FRAMES} frames" in status
    wait.until(lambda d: css("#tracks img"))
    t_upload = time.perf_counter() - t0

    # move the strength slider from 1.0 to 2.0 (ten steps of 0.1 with the keyboard)
    rng = css("#strength input[type=range]")[0]
    assert float(rng.get_attribute("value")) == pytest.approx(1.0)
    rng.send_keys(*[Keys.ARROW_RIGHT] * 10)
    wait.until(lambda d: float(css("#strength input[type=number]")[0].get_attribute("value")) == pytest.approx(2.0))

    # preview: three frames, original | edited, made with the slider's strength
    t1 = time.perf_counter()
    css("#preview-btn")[0].click()
    wait.until(lambda d: len(css("#preview img")) >= 3 and "Preview of" in css("#status")[0].text)
    t_preview = time.perf_counter() - t1
    assert "Preview of 3 frame(s): fs:smile x2." in css("#status")[0].text
    src = css("#preview img")[0].get_attribute("src")
    assert urllib.parse.urlsplit(src).netloc == origin
    shot = np.asarray(Image.open(io.BytesIO(_fetch(src))).convert("RGB")).astype(np.int16)
    assert shot.shape == (512, 1024, 3)  # side by side
    assert np.abs(shot[:, :512] - shot[:, 512:]).max(axis=2).mean() > 5  # the edited half differs

    # render the whole clip: the video and its report to download
    t2 = time.perf_counter()
    css("#render-btn")[0].click()
    wait.until(lambda d: any("report.zip" in (a.get_attribute("href") or "") for a in css("#downloads a")))
    t_render = time.perf_counter() - t2
    links = {Path(urllib.parse.unquote(urllib.parse.urlsplit(a.get_attribute("href")).path)).name:
             a.get_attribute("href") for a in css("#downloads a")}
    assert {"smile_edited.mp4", "report.zip", "report.html"} <= set(links), links
    assert all(urllib.parse.urlsplit(h).netloc == origin for h in links.values())
    assert "6 frames, 6 with a face, fs:smile x2" in css("#status")[0].text
    wait.until(lambda d: css("#out-video video"))
    video = tmp_path / "downloaded.mp4"
    video.write_bytes(_fetch(links["smile_edited.mp4"]))
    info = probe(video)
    assert info.num_frames == CUT_FRAMES and (info.width, info.height) == (512, 512)
    with zipfile.ZipFile(io.BytesIO(_fetch(links["report.zip"]))) as z:
        doc = json.loads(z.read("report.json"))
    assert len(doc["comparisons"]) == 1
    assert {v["frames"]["analysed"] for v in doc["videos"]} == {CUT_FRAMES}

    # every network request of the browser went to the local server (no CDN, web fonts or analytics); the
    # other schemes seen are data: URLs and chrome:// (the browser's own start page), which never leave it
    requested = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] in ("Network.requestWillBeSent", "Network.webSocketCreated"):
            u = msg["params"]["request"]["url"] if "request" in msg["params"] else msg["params"]["url"]
            if urllib.parse.urlsplit(u).scheme not in ("data", "blob", "chrome"):
                requested.append(u)
    assert any("/gradio_api/upload" in u for u in requested)  # the log holds the page's requests
    elsewhere = [u for u in requested if urllib.parse.urlsplit(u).netloc != origin]
    assert elsewhere == []
    print(f"upload+analyse {t_upload:.1f} s, preview {t_preview:.1f} s, render+report {t_render:.1f} s; "
          f"{len(requested)} requests, all to {origin}")


def test_preview_windows_select_exactly_their_frame(clip):
    """The one-frame ``--start/--end`` window a preview renders each frame with holds that frame only (the
    midpoints to its neighbours; open at the clip's ends); the spread of preview frames keeps both ends."""
    from vidinv.io.mux import frame_range, video_frame_times
    from vidinv.ui.session import _spread, _window

    pts, tb = video_frame_times(clip)
    times = [float(p * tb) for p in pts]
    assert len(times) == CUT_FRAMES
    for i in range(CUT_FRAMES):
        assert frame_range(clip, *_window(times, i)) == range(i, i + 1), i
    got = _spread(list(range(10, 20)), 3)
    assert len(got) == 3 and got[0] == 10 and got[-1] == 19 and got == sorted(set(got))
    assert 13 <= got[1] <= 16  # near the middle
    assert _spread([4, 7], 5) == [4, 7] and _spread([], 3) == []
