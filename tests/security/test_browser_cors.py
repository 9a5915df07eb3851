"""A real browser (Debian's Chromium, headless, driven by Playwright) posts to a form from a page on another
origin, through the real nginx gateway: a JSON fetch() (preflighted) and a form-encoded fetch() both read the
answer when the page's origin is in the form's allowed_origins; from another origin the browser refuses and
nothing is stored. A missing browser fails the test (`.ci/run` installs Chromium)."""
from __future__ import annotations

from pathlib import Path

from gateway_testkit import running_gateway
from lead_testkit import admin, create_form, start_lead_app, submit_url
from playwright.async_api import async_playwright
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from salesflow_shared.testing import serving_over_http

CHROMIUM = Path("/usr/bin/chromium")

# The customer's page: its script posts the way a site does (fetch JSON, or a form-encoded body).
PAGE = """<!doctype html><title>Demo request</title>
<script>
async function send(url, kind, fields) {
  const init = {method: "POST"};
  if (kind === "json") {
    init.headers = {"Content-Type": "application/json"};
    init.body = JSON.stringify(fields);
  } else {
    init.body = new URLSearchParams(fields);  // application/x-www-form-urlencoded: no preflight
  }
  try {
    const response = await fetch(url, init);
    return {status: response.status, body: await response.json()};
  } catch (error) {
    return {error: String(error)};
  }
}
</script>"""


async def page_site(request):
    return HTMLResponse(PAGE)


async def test_a_page_on_an_allowed_origin_posts_json_and_form_data_and_reads_the_answer(database_url, amqp_url,
                                                                                         bus_namespace):
    assert CHROMIUM.exists(), "Chromium is not installed (`.ci/run` installs Debian's chromium)"  # noqa: ASYNC240 - one stat
    site = Starlette(routes=[Route("/", page_site)])
    async with start_lead_app(database_url, amqp_url, bus_namespace) as lead, serving_over_http(site) as site_port:
        allowed_page = f"http://127.0.0.1:{site_port}"
        other_page = f"http://localhost:{site_port}"  # the same page on another origin
        form = await create_form(lead.client, {"name": "Demo", "mapping": {"email": "contact.email"}},
                                 allowed_origins=[allowed_page])
        async with serving_over_http(lead.app) as lead_port:
            with running_gateway(lead_port, "127.0.0.1") as gateway:
                url = gateway + submit_url(form)
                async with async_playwright() as playwright:
                    browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                                               args=["--no-sandbox"])
                    try:
                        page = await browser.new_page()
                        await page.goto(allowed_page)
                        answers = {kind: await page.evaluate("([url, kind, fields]) => send(url, kind, fields)",
                                                             [url, kind, {"sf_key": form["public_key"],
                                                                          "email": f"{kind}@customer.example"}])
                                   for kind in ("json", "form")}
                        await page.goto(other_page)
                        refused = await page.evaluate("([url, kind, fields]) => send(url, kind, fields)",
                                                      [url, "json", {"sf_key": form["public_key"],
                                                                     "email": "other@elsewhere.example"}])
                    finally:
                        await browser.close()
        for kind, answer in answers.items():
            assert answer.get("status") == 201, (kind, answer)
            assert answer["body"]["status"] == "accepted" and answer["body"]["outcome"] == "created"
        assert "Failed to fetch" in refused.get("error", ""), refused
        leads = (await lead.client.get("/v1/leads", headers=admin())).json()["items"]
        assert sorted(item["contact"]["email"] for item in leads) == ["form@customer.example", "json@customer.example"]
