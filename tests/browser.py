"""Headless Chromium for the UI tests: Debian's browser, driven by Playwright.

Playwright cannot download its own browser builds here, so it drives Debian's
`chromium` (/usr/bin/chromium). When that is missing, the session-scoped
`browser` fixture installs it with apt-get (as CI's test command runs as
root on a fresh Debian machine); where that is impossible the tests fail with a
message saying what to install, they are never skipped.

The `browser` fixture is conftest's (one Chromium for the whole session, whichever
modules use it). Use from a test module:

    from browser import chart_rendered, open_page, screenshot

    def test_page(browser, ...):
        page, errors = open_page(browser, url)
        ...
        assert errors == []
        screenshot(page, "name")
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout

CHROMIUM = Path(os.environ.get("FLOWGATE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_PACKAGE = "chromium"
REPO_ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = REPO_ROOT / "test-artifacts" / "screenshots"

LAUNCH_ARGS = [
    "--no-sandbox",  # the tests run as root in CI
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Debian's launcher adds this only when /dev/shm is small, and its check breaks when
    # /dev/shm is mounted twice; containers often have a 64 MB /dev/shm.
    "--disable-dev-shm-usage",
    # Pages may load nothing from outside this machine: any other host fails to resolve,
    # which shows up as a failed request in the page's errors.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1, EXCLUDE [::1]",
]
VIEWPORT = {"width": 1280, "height": 900}
TIMEOUT_MS = 15_000
APT_TIMEOUT_S = 900


def _apt_env() -> dict[str, str]:
    return {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "NEEDRESTART_MODE": "a"}


def install_chromium() -> float:
    """Install Debian's chromium with apt-get; returns the seconds it took."""
    apt_get = shutil.which("apt-get")
    if apt_get is None:
        pytest.fail(
            f"{CHROMIUM} is missing and there is no apt-get to install it: install Chromium "
            f"(or set FLOWGATE_CHROMIUM to its executable) to run the browser tests",
            pytrace=False,
        )
    if os.geteuid() != 0:
        pytest.fail(
            f"{CHROMIUM} is missing and only root can install it: run "
            f"`sudo apt-get install -y {CHROMIUM_PACKAGE}` (or the tests as root)",
            pytrace=False,
        )
    started = time.monotonic()
    # Wait for another apt/dpkg (say, unattended-upgrades) rather than failing on its lock.
    lock = ["-o", "DPkg::Lock::Timeout=300"]
    for command in (
        [apt_get, *lock, "update"],
        [apt_get, *lock, "install", "-y", "-q", CHROMIUM_PACKAGE],
    ):
        try:
            result = subprocess.run(
                command,
                env=_apt_env(),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=APT_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"`{' '.join(command)}` took over {APT_TIMEOUT_S} s", pytrace=False)
        if result.returncode != 0:
            output = (result.stdout + result.stderr)[-4000:]
            pytest.fail(
                f"installing Chromium for the browser tests failed: `{' '.join(command)}` "
                f"exited {result.returncode}:\n{output}",
                pytrace=False,
            )
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"apt-get installed {CHROMIUM_PACKAGE} but {CHROMIUM} is not there")
    return time.monotonic() - started


def ensure_chromium() -> Path:
    """Debian's Chromium, installed first when it is missing."""
    if not os.access(CHROMIUM, os.X_OK):
        seconds = install_chromium()
        print(f"\ninstalled {CHROMIUM_PACKAGE} for the browser tests in {seconds:.0f} s")
    return CHROMIUM


class _AsyncioGuard:
    """Lets the other tests use asyncio while the session's Playwright is alive.

    Playwright's sync API runs its event loop in a greenlet of the main thread and,
    between its calls, marks that loop as the thread's running loop. While that mark is
    set, `asyncio.run()` raises "cannot be called from a running event loop", so every
    test after the first browser test that uses asyncio would fail. This plugin lifts
    the mark around each test phase of tests that do not use the `browser` fixture, and
    puts it back afterwards (Playwright needs it for its next call).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop | None):
        self.loop = loop

    @contextlib.contextmanager
    def _lifted(self, item: pytest.Item) -> Iterator[None]:
        if self.loop is None or "browser" in getattr(item, "fixturenames", ()):
            yield
            return
        asyncio._set_running_loop(None)
        try:
            yield
        finally:
            if self.loop is not None:  # still None once the browser has been closed
                asyncio._set_running_loop(self.loop)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_setup(self, item):
        with self._lifted(item):
            return (yield)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item):
        with self._lifted(item):
            return (yield)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_teardown(self, item):
        with self._lifted(item):
            return (yield)


@pytest.fixture(scope="session")
def browser(pytestconfig: pytest.Config) -> Iterator[Browser]:
    """One headless Chromium for the whole test session (installed first if missing)."""
    executable = ensure_chromium()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(executable), headless=True, args=LAUNCH_ARGS
        )
        guard = _AsyncioGuard(asyncio._get_running_loop())
        pytestconfig.pluginmanager.register(guard, "flowgate-browser-asyncio-guard")
        try:
            yield launched
        finally:
            # This teardown may run inside a phase the guard lifted the mark for.
            if guard.loop is not None:
                asyncio._set_running_loop(guard.loop)
            pytestconfig.pluginmanager.unregister(guard)
            guard.loop = None
            launched.close()


def open_page(browser: Browser, url: str) -> tuple[Page, list[str]]:
    """A fresh page (own context: no shared cookies) at `url`, once it has loaded.

    The returned list collects, for as long as the page lives: console errors, uncaught
    exceptions, requests that failed (connection refused, blocked host, ...) and responses
    with an HTTP status of 400 or more. Tests assert it is empty.
    """
    context = browser.new_context(
        viewport=VIEWPORT,
        locale="en-US",
        timezone_id="UTC",
        reduced_motion="reduce",
        service_workers="block",
    )
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []

    def on_console(message) -> None:
        if message.type == "error":
            where = message.location.get("url") or ""
            errors.append(f"console error: {message.text}" + (f" ({where})" if where else ""))

    page.on("console", on_console)
    page.on("pageerror", lambda exc: errors.append(f"uncaught exception: {exc}"))
    page.on(
        "requestfailed",
        lambda request: errors.append(
            f"request failed: {request.method} {request.url}: {request.failure}"
        ),
    )

    def on_response(response) -> None:
        if response.status >= 400:
            errors.append(f"HTTP {response.status}: {response.request.method} {response.url}")

    page.on("response", on_response)
    page.goto(url, wait_until="load")
    return page, errors


@contextlib.contextmanager
def visit(browser: Browser, url: str) -> Iterator[tuple[Page, list[str]]]:
    """`open_page`, closing the page's context afterwards whatever happens."""
    page, errors = open_page(browser, url)
    try:
        yield page, errors
    finally:
        page.context.close()


def screenshot(page: Page, name: str) -> Path:
    """Save a full-page PNG as test-artifacts/screenshots/<name>.png; returns its path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "page"
    path = SCREENSHOTS / f"{safe}.png"
    page.screenshot(path=str(path), full_page=True, animations="disabled")
    return path


# True once some element matching the selector holds an SVG with drawn shapes and a size,
# or a canvas with a size and (when it is a 2D canvas) at least one non-transparent pixel.
_CHART_RENDERED_JS = """
(selector) => {
  const shapes = "path, rect, circle, ellipse, line, polyline, polygon, text, image, use";
  for (const root of document.querySelectorAll(selector)) {
    const candidates = [root, ...root.querySelectorAll("svg, canvas")];
    for (const el of candidates) {
      const tag = el.tagName.toLowerCase();
      const box = el.getBoundingClientRect();
      if (box.width <= 0 || box.height <= 0) continue;
      if (tag === "svg" && el.querySelector(shapes)) return true;
      if (tag === "canvas" && el.width > 0 && el.height > 0) {
        let ctx = null;
        try { ctx = el.getContext("2d"); } catch (e) { ctx = null; }
        if (ctx === null) return true;  // a WebGL canvas: its size is all we can check
        const data = ctx.getImageData(0, 0, el.width, el.height).data;
        for (let i = 3; i < data.length; i += 4) if (data[i] !== 0) return true;
      }
    }
  }
  return false;
}
"""


def chart_rendered(page: Page, selector: str, timeout_ms: int = TIMEOUT_MS) -> bool:
    """Wait until `selector` holds a non-empty SVG or canvas chart; fail with what it holds."""
    try:
        page.wait_for_function(_CHART_RENDERED_JS, arg=selector, timeout=timeout_ms)
    except PlaywrightTimeout:
        found = page.eval_on_selector_all(
            selector, "els => els.map(e => e.outerHTML.slice(0, 500))"
        )
        raise AssertionError(
            f"no chart rendered in {selector!r} within {timeout_ms} ms; "
            f"matching elements: {found or 'none'}"
        ) from None
    return True
