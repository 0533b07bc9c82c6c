"""`hoijax view` in a real browser: headless Chromium loads the page, the 3D canvas renders
non-blank pixels, and moving the frame slider (keyboard, as a user would) changes the frame.
Screenshots are kept in results/test-artifacts/."""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ARTIFACTS = Path(os.environ.get("HOIJAX_TEST_ARTIFACTS", "results/test-artifacts"))


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


@pytest.fixture(scope="module")
def result_dir(tmp_path_factory):
    from hoijax import data, tracking, viz

    cfg = data.SyntheticConfig(num_frames=6, image_size=(64, 64), with_rgb=True,
                               object_kind="box", with_features=False).noiseless()
    seq = data.generate_sequence(cfg)
    res = viz.oracle_result(seq)
    model = tracking.ManoSource.synthetic().model("right")
    out = tmp_path_factory.mktemp("view") / "seq_box"
    tracking.save_result(res, out, meta={"sequence": "seq_box"})
    viz.save_scene(out, viz.scene_from("seq_box", seq, res, model))
    return out.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _png(data: bytes) -> np.ndarray:
    import matplotlib.image as mpimg

    return mpimg.imread(io.BytesIO(data), format="png")[..., :3]


def test_viewer_in_headless_chromium(result_dir):
    playwright = pytest.importorskip("playwright.sync_api")
    exe = _chromium()
    if exe is None:
        pytest.skip("no chromium executable on PATH (.ci/run installs Debian's chromium)")
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "hoijax.cli.main", "view", str(result_dir),
                             "--port", str(port), "--host", "127.0.0.1"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url, t0 = None, time.time()
        while url is None and time.time() - t0 < 120:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                pytest.fail(f"hoijax view exited with {proc.returncode}")
            if line.startswith("hoijax view:"):
                url = line.split(" at ")[1].split()[0]
        assert url == f"http://127.0.0.1:{port}"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=exe, args=[
                "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"])
            try:
                page = browser.new_page(viewport={"width": 1100, "height": 750})
                errors = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto(url)
                page.get_by_text("frame 0 of 6").wait_for(timeout=60_000)
                canvas = page.locator("canvas").first
                time.sleep(2.0)  # let the meshes arrive and render
                first = _png(canvas.screenshot())
                page.screenshot(path=str(ARTIFACTS / "viewer_frame0.png"))
                # non-blank: many pixels differ from the background colour
                bg = np.median(first.reshape(-1, 3), axis=0)
                drawn = np.any(np.abs(first - bg) > 0.1, axis=-1)
                assert drawn.mean() > 0.001, f"canvas almost blank ({drawn.mean():.4%} drawn)"

                slider = page.get_by_role("slider").first
                slider.focus()
                for _ in range(3):
                    page.keyboard.press("ArrowRight")
                page.get_by_text("frame 3 of 6").wait_for(timeout=30_000)
                time.sleep(2.0)
                second = _png(canvas.screenshot())
                page.screenshot(path=str(ARTIFACTS / "viewer_frame3.png"))
                changed = np.any(np.abs(second - first) > 0.05, axis=-1)
                assert changed.sum() > 20, "the canvas did not change with the frame"
                assert not errors, errors
            finally:
                browser.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
