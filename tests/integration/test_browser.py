"""The browser tier: what an operator sees in a real headless Chromium against a real web server.

Playwright drives Debian's ``chromium`` (installed by ``scripts/ensure-services.sh``, never by
``playwright install``) against gunicorn (gthread, as in production) on the test PostgreSQL database.
The live level stream is opened by a page's own ``EventSource``: it cannot send an Authorization
header, so it authenticates with the admin login's session cookie (same origin; a GET needs no CSRF
token). Screenshots of each page are kept beside the server log.
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from decimal import Decimal

import pytest
import requests
from django.contrib.auth import get_user_model
from django.utils import timezone

from stock import services
from supplychain.core.bootstrap import bootstrap
from tests.processes import free_port, running
from tests.stock.factories import IngredientFactory, csv_opener

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "pw-for-browser-tests"


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's Chromium; missing is a failure that says how to get it, never a skip."""
    path = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    if not os.access(path, os.X_OK):
        pytest.fail(
            f"the browser tier needs Chromium at {path}: `make test` installs it (scripts/ensure-services.sh, "
            "apt-get install chromium), or set CHROMIUM to where it is"
        )
    return path


@pytest.fixture
def web(real_services, process_env, log_dir):
    """gunicorn serving the project on a free port; yields its base URL."""
    port = free_port()
    argv = [sys.executable, "-m", "gunicorn", "supplychain.wsgi:application", "-b", f"127.0.0.1:{port}"]
    argv += ["-w", "1", "--worker-class", "gthread", "--threads", "4"]
    env = {**process_env, "ALLOWED_HOSTS": "127.0.0.1", "DEBUG": "true"}  # DEBUG: WhiteNoise serves admin assets
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            return requests.get(f"{base}/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    with running("browser-web", argv, env, log_dir) as process:
        process.wait_until(answers, 60, "gunicorn to answer")
        yield base


@pytest.fixture
def stock_on_hand():
    """Ham is low (30 available, threshold 100) with a lot expiring in two days; cheese is plentiful."""
    IngredientFactory(sku="ham", low_stock_threshold=Decimal(100))
    IngredientFactory(sku="cheese", low_stock_threshold=Decimal(5))
    soon = (timezone.localdate() + timedelta(days=2)).isoformat()
    later = (timezone.localdate() + timedelta(days=20)).isoformat()
    services.ingest_receipt(
        key="browser.csv",
        open_stream=csv_opener(
            "sku,quantity,best_before,lot,supplier\n"
            f"ham,40,{soon},LOT-BROWSER-1,Green Valley Farms Cooperative\n"
            f"cheese,50,{later},LOT-BROWSER-2,Green Valley Farms Cooperative\n"
        ),
        source="upload",
    )
    services.reserve_stock(transaction_id="browser-1", items=[services.Item("ham", Decimal(10))])
    get_user_model().objects.create_superuser("operator", "ops@example.com", PASSWORD)


def logged_in_page(playwright, chromium: str, base: str):
    browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{base}/admin/login/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{base}/admin/")
    return browser, page


def test_operator_logs_in_and_sees_the_dashboard_chart_stock_panel_and_a_batches_list_that_fits(
    chromium, web, stock_on_hand, log_dir
):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser, page = logged_in_page(playwright, chromium, web)
        try:
            modules = page.locator("#content-main div.module caption a").all_inner_texts()
            assert modules[0].lower() == "stock", modules  # Stock first on the index

            page.goto(f"{web}/admin/events/subscription/dashboard/")
            page.screenshot(path=str(log_dir / "dashboard.png"), full_page=True)
            chart = page.locator("#events-chart")
            assert chart.is_visible()
            box = chart.bounding_box()
            assert box["width"] > 600 and box["height"] > 150  # drawn, not an empty element
            labels = chart.locator("text").all_text_contents()
            assert "events per minute" in labels
            now = timezone.localtime()
            minutes = {(now - timedelta(minutes=n)).strftime("%H:%M") for n in (0, 1)}
            assert minutes & set(labels), labels  # the time axis ends at the current minute
            assert chart.locator("rect").count() >= 1  # the events the test's receipt and reservation published

            low = page.locator("#low-stock").inner_text()
            assert "ham" in low and "30.000 available" in low and "cheese" not in low
            expiring = page.locator("#expiring-batches").inner_text()
            assert "LOT-BROWSER-1" in expiring and "LOT-BROWSER-2" not in expiring

            page.goto(f"{web}/admin/stock/batch/")
            page.screenshot(path=str(log_dir / "batches.png"), full_page=True)
            results = page.locator("#changelist .results")
            overflow = results.evaluate("el => el.scrollWidth - el.clientWidth")
            assert overflow <= 0, f"the batches list is {overflow} px wider than its place on a 1280 px page"
            assert "30.000 of 40.000" in page.locator("#result_list").inner_text()

            page.click("text=View site")
            assert page.title() and "404" not in page.title() and "Not Found" not in page.content()
        finally:
            browser.close()


def test_a_pages_event_source_on_the_live_level_stream_receives_a_change(chromium, web, stock_on_hand, log_dir):
    from playwright.sync_api import sync_playwright

    token = bootstrap(demo=False).api_token
    with sync_playwright() as playwright:
        browser, page = logged_in_page(playwright, chromium, web)
        try:
            page.goto(f"{web}/admin/events/subscription/dashboard/")
            page.evaluate(
                """() => {
                    window.received = [];
                    const source = new EventSource('/api/v1/stock/levels/stream?sku=ham');
                    for (const name of ['level', 'level_changed']) {
                        source.addEventListener(name, (e) => window.received.push({name, data: JSON.parse(e.data)}));
                    }
                    source.onerror = () => window.received.push({name: 'error', state: source.readyState});
                    window.source = source;
                }"""
            )
            page.wait_for_function("() => window.received.some(e => e.name === 'level')", timeout=20_000)
            [first] = page.evaluate("() => window.received")
            assert first["data"] == {"sku": "ham", "on_hand": "40.000", "reserved": "10.000", "available": "30.000"}

            reserved = requests.post(
                f"{web}/api/v1/stock/reservations/",
                json={"transaction_id": "browser-2", "items": [{"sku": "ham", "quantity": 5}]},
                headers={"Authorization": f"Token {token}"},
                timeout=10,
            )
            assert reserved.status_code == 201, reserved.text
            page.wait_for_function("() => window.received.some(e => e.name === 'level_changed')", timeout=20_000)
            changes = [e for e in page.evaluate("() => window.received") if e["name"] == "level_changed"]
            assert changes[0]["data"]["sku"] == "ham"
            assert (changes[0]["data"]["reserved"], changes[0]["data"]["available"]) == ("15.000", "25.000")
            assert not [e for e in page.evaluate("() => window.received") if e["name"] == "error"]
            page.evaluate("() => window.source.close()")
        finally:
            browser.close()


def failed_forecast_run():
    """A real run on the engine's executor (its messages run in this process): Prepare, a Parallel of two
    branches, then ``Build forecast`` failing twice (one retry) with no catcher for its error."""
    from django.db import transaction

    from forecasting import services as forecasting
    from forecasting.engine.builder import Machine, catch, retry
    from forecasting.models import Run
    from forecasting.services import execution
    from tests.forecasting.inline import InlineDispatcher

    machine = (
        Machine()
        .pass_("Prepare", result={"horizon_days": 28}, result_path="$.plan")
        .parallel("Models", [Machine().task("Volume", "probe.echo"), Machine().pass_("Recipe mix")], result_path=None)
        .task(
            "Build forecast",
            "probe.fail_until",
            parameters={"key": "browser", "failures": 99, "error": "ModelDiverged"},
            retry=[retry(["ModelDiverged"], interval=1, max_attempts=1)],
            catch=[catch(["NotThisOne"], "Notify")],
            end=True,
        )
        .pass_("Notify", end=True)
    )
    forecasting.save_pipeline(name="browser-forecast", definition=machine.build())
    dispatcher, previous = InlineDispatcher(), execution.dispatch.dispatcher
    execution.dispatch.dispatcher = dispatcher
    try:
        with transaction.atomic():
            run, _ = forecasting.start_run(pipeline="browser-forecast", input={"weekday": "Friday"}, name="nightly-1")
        dispatcher.drain()
    finally:
        execution.dispatch.dispatcher = previous
    run = Run.objects.get(id=run.id)
    assert (run.status, run.error) == ("FAILED", "ModelDiverged")
    return run


def test_an_operator_sees_a_failed_runs_picture_history_and_attempts(chromium, web, stock_on_hand, log_dir):
    from playwright.sync_api import sync_playwright

    from forecasting import diagram
    from tests.probe import steps

    steps.store().delete(steps.PREFIX + "calls:browser")
    run = failed_forecast_run()
    with sync_playwright() as playwright:
        browser, page = logged_in_page(playwright, chromium, web)
        try:
            page.goto(f"{web}/admin/forecasting/run/")
            assert "nightly-1" in page.locator("#result_list").inner_text()
            page.click("text=nightly-1")
            page.wait_for_selector("svg#run-diagram")
            page.screenshot(path=str(log_dir / "run.png"), full_page=True)
            picture = page.locator("svg#run-diagram")
            picture.screenshot(path=str(log_dir / "run-picture.png"))
            box = picture.bounding_box()
            assert box["width"] > 400 and box["height"] > 300  # drawn, not an empty element

            def state(path: str):
                return picture.locator(f'g.state[data-path="{path}"]')

            failed = state("Build forecast")
            assert failed.get_attribute("data-status") == diagram.FAILED
            fill = failed.locator("rect.box").evaluate("el => getComputedStyle(el).fill")
            assert fill == "rgb(252, 146, 114)" == _rgb(diagram.COLOURS[diagram.FAILED][0]), fill
            assert state("Prepare").get_attribute("data-status") == diagram.SUCCEEDED
            assert state("Models/Branches[0]/Volume").get_attribute("data-status") == diagram.SUCCEEDED
            assert state("Notify").get_attribute("data-status") == diagram.NOT_RUN
            assert "failed" in picture.locator("text").all_text_contents()  # the legend

            history = page.locator("#run-history").inner_text()
            assert history.count("TaskFailed") == 2 and "ExecutionFailed" in history
            assert history.index("ExecutionStarted") < history.index("TaskFailed") < history.index("ExecutionFailed")
            attempts = page.locator("#run-attempts").inner_text()
            assert "ModelDiverged" in attempts and "attempt 2 of browser" in attempts
            assert str(run.id) in page.content()
        finally:
            browser.close()


def _rgb(colour: str) -> str:
    red, green, blue = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgb({red}, {green}, {blue})"
