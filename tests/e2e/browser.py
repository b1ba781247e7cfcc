"""Headless Chromium for the web viewer's tests: Debian's ``chromium`` + ``chromium-driver``
(``bash evals/datasets/system_deps.sh --browser``), driven by selenium.

Screenshots go to the test's temporary folder; with ``IMGRAG_WEB_SCREENSHOTS=docs/img`` they are
also written there (in 256 colours, to keep them small), which is how the pictures in
docs/web-viewer.md are made.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
WINDOW = (1366, 860)  # a laptop screen


def _binary(*names: str) -> str | None:
    for n in names:
        found = shutil.which(n)
        if found:
            return found
    return None


def chromium_or_skip() -> tuple[str, str]:
    """(browser, driver) paths, or skip the test saying exactly what is missing and how to get it."""
    browser = _binary("chromium", "chromium-browser", "google-chrome")
    driver = _binary("chromedriver")
    missing = [n for n, p in (("chromium", browser), ("chromium-driver", driver)) if p is None]
    if missing:
        pytest.skip(
            f"no {' and no '.join(missing)} on PATH: install them with `bash evals/datasets/system_deps.sh --browser` "
            "(Debian packages chromium and chromium-driver) to run the web viewer's browser tests"
        )
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.skip("selenium is not installed: pip install -e '.[dev]'")
    assert browser and driver
    return browser, driver


def start_chromium(download_dir: Path) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver = chromium_or_skip()
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for arg in (
        "--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
        f"--window-size={WINDOW[0]},{WINDOW[1]}", "--lang=en-US", "--hide-scrollbars",
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    opts.add_experimental_option("prefs", {"download.default_directory": str(download_dir)})
    d = webdriver.Chrome(service=Service(driver), options=opts)
    d.set_page_load_timeout(120)
    d.set_script_timeout(180)
    return d


def screenshot(driver: Any, tmp: Path, name: str) -> Path:
    """Save a PNG of the window to the test folder (and to $IMGRAG_WEB_SCREENSHOTS when set)."""
    path = tmp / name
    driver.save_screenshot(str(path))
    target = os.environ.get("IMGRAG_WEB_SCREENSHOTS")
    if target:
        out = Path(target)
        out = out if out.is_absolute() else REPO / out
        out.mkdir(parents=True, exist_ok=True)
        from PIL import Image

        with Image.open(path) as img:  # 256 colours: a UI screenshot loses nothing visible, the file a lot
            img.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(out / name, optimize=True)
    return path


def js_errors(driver: Any) -> list[str]:
    """Script errors and CSP violations the page logged (network 4xx from purposeful probes excluded)."""
    return [
        e["message"] for e in driver.get_log("browser")
        if e["level"] == "SEVERE" and e.get("source") != "network"
    ]
