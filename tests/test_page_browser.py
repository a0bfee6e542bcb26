"""The live page (GET /) in a real browser: Debian's headless Chromium, driven by Playwright.

The API and a consumer run in this process on this run's servers; the browser loads the
page, publishes through its form, and watches the tenant's meters and the rate chart
move. Every request the page makes is recorded: none may go to another host, none may
carry the key in its URL, and the console must stay free of errors. A screenshot taken
mid-publish is saved under .artifacts/ (the README shows one).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import pytest
from playwright.async_api import Browser, Page, Request, async_playwright

from tests.conftest import TEST_API_KEY, ClientFactory
from tests.tools import tool

pytestmark = pytest.mark.timeout(240)

ARTIFACTS = Path(__file__).resolve().parent.parent / ".artifacts"
FLEET = 25_000  # the cap: one full publish, ten seconds at 2,500 reads/s
SETTLE_S = 60.0


@dataclass
class Browsing:
    """A page in a fresh browser context, and everything it did."""

    page: Page
    origin: str
    requests: list[Request] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    def foreign_requests(self) -> list[str]:
        return [
            request.url
            for request in self.requests
            if not request.url.startswith(self.origin + "/")
        ]

    def urls_with_key(self) -> list[str]:
        return [request.url for request in self.requests if TEST_API_KEY in request.url]

    def api_requests(self) -> list[Request]:
        return [
            request for request in self.requests if urlsplit(request.url).path.startswith("/api/")
        ]

    async def until(self, condition: str, timeout_s: float = SETTLE_S) -> None:
        """Wait until the JavaScript expression ``condition`` holds in the page. (Playwright's
        wait_for_function evaluates its predicate with eval, which the page's CSP refuses,
        as it should; evaluate goes through the DevTools protocol.)"""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not await self.page.evaluate(f"() => Boolean({condition})"):
            if asyncio.get_running_loop().time() > deadline:
                status = await self.text("#publish-status")
                raise AssertionError(f"not within {timeout_s} s: {condition} (status: {status})")
            await asyncio.sleep(0.2)

    async def text(self, selector: str) -> str:
        return str(await self.page.text_content(selector)).strip()

    async def number(self, selector: str) -> int:
        text = await self.text(selector)
        return int(text.replace(",", "")) if text.replace(",", "").isdigit() else 0


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    chromium = tool("chromium")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium)
        try:
            yield launched
        finally:
            await launched.close()


async def browse(browser: Browser, base: str) -> Browsing:
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await context.new_page()
    browsing = Browsing(page, base.rstrip("/"))
    page.on("request", lambda request: browsing.requests.append(request))
    page.on(
        "console",
        lambda message: (
            browsing.console_errors.append(message.text) if message.type == "error" else None
        ),
    )
    page.on("pageerror", lambda error: browsing.console_errors.append(str(error)))
    await page.goto(base)
    return browsing


async def test_page_publishes_and_shows_the_fleet_move(
    browser: Browser, make_client: ClientFactory, consumer: None, tenant: str
) -> None:
    client = await make_client()
    base = str(client.make_url("/"))
    browsing = await browse(browser, base)
    page = browsing.page
    # The page draws the rate chart (with its cap line) and the queue before anything runs.
    await page.wait_for_selector("#rates polyline.enqueued", state="attached")
    assert await browsing.text("#rate-cap") == "2,500/s"
    assert await page.get_attribute("#rates", "data-enqueued-peak") == "0"
    policy = (await page.request.get(base)).headers["content-security-policy"]
    assert "script-src 'self'" in policy

    # Plan first: a dry run shows the plan and its warnings, and enqueues nothing.
    await page.fill("#key", TEST_API_KEY)
    form = "#publish"
    await page.fill(f"{form} [name=tenantId]", tenant)
    await page.fill(f"{form} [name=meterCount]", str(FLEET + 5_000))  # clamped, with a warning
    await page.click("#plan")
    await page.wait_for_selector("#plan-result", state="visible")
    assert "25000" in await browsing.text("#plan-warnings")  # the clamp, in its own words
    assert "25,000" in await browsing.text("#plan-figures")
    assert await browsing.text("#publish-status") == "dry run: nothing was enqueued"
    assert await browsing.text("#queue-completed") == "0"
    # A field changed after the plan hides the publish button: what is published was planned.
    await page.fill(f"{form} [name=feederCount]", "25")
    await page.wait_for_selector("#plan-result", state="hidden")
    await page.click("#plan")
    await page.wait_for_selector("#plan-result", state="visible")

    # Then for real: the tenant's meters and the rate chart move while it runs.
    await page.click("#publish-now")
    await browsing.until(  # about halfway
        "Number(document.querySelector('#tenant-meters').textContent.replace(/,/g, '')) >= 10000"
        " && Number(document.querySelector('#rates').dataset.enqueuedPeak) > 0",
    )
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=ARTIFACTS / "page-during-publish.png", full_page=True)
    await browsing.until(
        "document.querySelector('#publish-status').textContent.startsWith('published')",
    )
    await browsing.until(
        f"document.querySelector('#tenant-reads').textContent === '{FLEET:,}'",
    )
    assert await browsing.number("#tenant-meters") == FLEET
    peak = int(await page.get_attribute("#rates", "data-enqueued-peak") or 0)
    assert 0 < peak <= 2_500
    assert int(await page.get_attribute("#rates", "data-ingested-peak") or 0) > 0
    assert await browsing.number("#consumers-alive") == 1
    assert await page.locator("#completeness .bar").count() == 1
    assert await page.locator("#feeder-load .bar").count() == 10  # the top 10 of 25 feeders
    await page.screenshot(path=ARTIFACTS / "page-after-publish.png", full_page=True)

    # The key went only as a bearer header, and only where it was needed; nothing kept it.
    posts = [request for request in browsing.requests if request.method == "POST"]
    assert len(posts) == 3  # two dry runs, one publish
    bodies = [orjson.loads(post.post_data or "null") for post in posts]
    assert [body.get("dryRun") for body in bodies] == [True, True, None]
    assert bodies[2] == {name: value for name, value in bodies[1].items() if name != "dryRun"}
    for post in posts:
        assert await post.header_value("authorization") == f"Bearer {TEST_API_KEY}"
    reads = [request for request in browsing.api_requests() if request.method == "GET"]
    assert reads and all([await read.header_value("authorization") is None for read in reads])
    assert browsing.urls_with_key() == []
    assert page.url == base
    stored = await page.evaluate("[localStorage.length, sessionStorage.length, document.cookie]")
    assert stored == [0, 0, ""]
    assert browsing.foreign_requests() == []
    assert browsing.console_errors == []


async def test_page_asks_for_the_key_when_reads_need_it(
    browser: Browser, make_client: ClientFactory, tenant: str
) -> None:
    client = await make_client(auth_reads=True)
    base = str(client.make_url("/"))
    browsing = await browse(browser, base)
    page = browsing.page
    await page.wait_for_selector("#key-needed", state="visible")
    await asyncio.sleep(2.5)  # a poll's worth: nothing is read without the key
    assert browsing.api_requests() == []

    await page.fill("#key", TEST_API_KEY)
    await page.wait_for_selector("#rates polyline.enqueued", state="attached")
    await page.wait_for_selector("#key-needed", state="hidden")
    # A tenant chosen on the page is read with the key too.
    await page.fill("#tenant", tenant)
    await page.dispatch_event("#tenant", "change")
    await browsing.until("document.querySelector('#tenant-latest').textContent === 'none yet'")
    reads = browsing.api_requests()
    assert {urlsplit(request.url).path for request in reads} >= {
        "/api/ami/scale/rates",
        "/api/ami/tenants",
        "/api/ami/scale/status",
        "/api/ami/kpi/quickcheck",
        "/api/ami/events",
    }
    for read in reads:
        assert await read.header_value("authorization") == f"Bearer {TEST_API_KEY}"
    assert browsing.urls_with_key() == []
    assert browsing.foreign_requests() == []
    assert browsing.console_errors == []


async def test_page_shows_hostile_text_as_text(
    browser: Browser, make_client: ClientFactory, tenant: str
) -> None:
    """A tenant id typed into the page, and the fields of the tenant's events, reach the
    page as text: markup in them creates no element and loads nothing."""
    client = await make_client()
    created = await client.post(
        "/api/ami/events",
        json={
            "tenantId": tenant,
            "type": "theft",
            "feederId": "FEEDER_3",
            "startsAt": "2026-01-01T00:00:00Z",
            "durationMinutes": 60,
        },
        headers={"Authorization": f"Bearer {TEST_API_KEY}"},
    )
    assert created.status == 201, await created.text()
    browsing = await browse(browser, str(client.make_url("/")))
    page = browsing.page
    hostile = '<img src="/x" onerror="window.owned = 1">'
    await page.fill("#tenant", hostile)
    await page.dispatch_event("#tenant", "change")
    assert hostile in await browsing.text("#tenant-problem")
    await page.fill("#tenant", tenant)
    await page.dispatch_event("#tenant", "change")
    await browsing.until("document.querySelector('#events tbody tr') !== null")
    row = await page.locator("#events tbody tr").first.inner_text()
    assert "theft" in row and "FEEDER_3" in row
    assert await page.evaluate("document.querySelectorAll('img').length") == 0
    assert await page.evaluate("window.owned === undefined")
    assert not [request for request in browsing.requests if urlsplit(request.url).path == "/x"]
    assert browsing.console_errors == []
