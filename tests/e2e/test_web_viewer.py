"""The web viewer in a real browser: headless Chromium (Debian's chromium + chromium-driver) drives
`imgrag serve --http` (users log in with bearer tokens from the token file) and `imgrag ui` (the
local operator, with the key it prints), over an index built by `imgrag index` with real models.

It searches, opens a page, toggles overlays, copies an OCR line, asks the bundled agent and exports
the answer, rolls the index back, and asserts on the DOM; it also checks what an attacker would try
(cookie flags, CSRF, foreign origins and hosts, HTML in indexed text, ids the user may not see).
The corpus is tests/e2e/shared_corpus.py's (a copy of the index shared by the session): contract +
invoice for group `legal`, memo + cat photo for `hr`, and a public notice this module indexes.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image, ImageDraw

from browser import js_errors, screenshot, start_chromium
from mcp_http import free_port as _free_port, imgrag_cmd
from shared_corpus import XSS, copy_index
from test_mcp_e2e import HR_TOKEN, LEGAL_TOKEN, OPS_TOKEN

pytestmark = pytest.mark.slow

WAIT = 60


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    for _ in range(900):
        if proc.poll() is not None:
            raise AssertionError(f"{url}: the server exited: " + log.read_text()[-3000:])
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer: " + log.read_text()[-3000:])


def _first_search(c: httpx.Client) -> None:
    r = c.get("/api/search", params={"q": "warm-up", "k": 1}, timeout=900)
    assert r.status_code == 200, r.text
    c.close()


def _link_client(base: str, key: str) -> httpx.Client:
    """A client logged in to `imgrag ui` through its login link (the cookie set by hand: see session_client)."""
    c = httpx.Client(base_url=base, follow_redirects=False, timeout=120)
    r = c.get("/login", params={"token": key})
    assert r.status_code == 303, r.text
    name, _, rest = r.headers["set-cookie"].partition("=")
    c.cookies.clear()
    c.headers["Cookie"] = f"{name}={rest.split(';')[0]}"
    return c


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def site(shared_corpus: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("web")
    # a copy of the shared index (legal with the XSS note and tag `contracts`, then hr: versions 1, 2), and
    # the public notice indexed here: version 3
    corpus = copy_index(shared_corpus, root)
    home, env = corpus["home"], corpus["env"]
    r = subprocess.run(
        [*imgrag_cmd(), "index", str(corpus["root"] / "extra"), "--public", "--json"],
        env=env, cwd=root, capture_output=True, text=True, timeout=1200,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads(r.stdout)["indexed"] == 1, r.stdout
    tokens = root / "tokens.json"
    tokens.write_text(json.dumps({
        LEGAL_TOKEN: {"name": "alice", "groups": ["legal"]},
        HR_TOKEN: {"name": "bob", "groups": ["hr"]},
        OPS_TOKEN: {"name": "ops", "all_access": True},
    }))
    tokens.chmod(0o600)
    charts = root / "eval-results"
    charts.mkdir()
    chart = Image.new("RGB", (360, 220), "white")
    ImageDraw.Draw(chart).rectangle((40, 60, 120, 200), fill=(36, 82, 122))
    chart.save(charts / "retrieval-demo.png")

    serve_port, ui_port = _free_port(), _free_port()
    serve_log, ui_log = root / "serve.log", root / "ui.log"
    serve = subprocess.Popen(
        [*imgrag_cmd(), "serve", "--http", "--port", str(serve_port), "--tokens", str(tokens)],
        env=env, cwd=root, stdout=serve_log.open("w"), stderr=subprocess.STDOUT,
    )
    ui = subprocess.Popen(
        [*imgrag_cmd(), "ui", "--port", str(ui_port), "--eval-dir", str(charts)],
        env=env, cwd=root, stdout=ui_log.open("w"), stderr=subprocess.STDOUT,
    )
    try:
        serve_url, ui_url = f"http://127.0.0.1:{serve_port}", f"http://127.0.0.1:{ui_port}"
        _wait_http(serve_url + "/login", serve, serve_log)
        _wait_http(ui_url + "/login", ui, ui_log)
        m = re.search(r"/login\?token=([A-Za-z0-9_-]+)", ui_log.read_text())
        assert m, "imgrag ui printed no login link: " + ui_log.read_text()
        # A server answers before its models are loaded (the warm-up runs in the background), and
        # the first search waits for them: 65 s at load ~20 on the 2-core box (audit log), longer
        # than a test's WAIT (60 s) for its first hit. One search per server here, bounded only by
        # the hang guard, so the tests' waits are for the page's own work on a warm server.
        _first_search(session_client(serve_url, OPS_TOKEN))
        _first_search(_link_client(ui_url, m.group(1)))
        yield {
            **corpus, "home": home, "env": env, "work": root, "tokens": tokens,
            "serve": serve_url, "ui": ui_url, "ui_key": m.group(1), "serve_log": serve_log,
        }
    finally:
        _stop(serve)
        _stop(ui)


@pytest.fixture(scope="module")
def browser(site: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Any:
    d = start_chromium(tmp_path_factory.mktemp("downloads"))
    yield d
    d.quit()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    return tmp_path


# -- helpers ---------------------------------------------------------------------------------------


def wait_for(driver: Any, css: str, timeout: float = WAIT) -> Any:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(EC.presence_of_element_located((By.CSS_SELECTOR, css)))


def wait_until(driver: Any, fn: Any, timeout: float = WAIT) -> Any:
    """Poll ``fn`` until it is truthy; an element the page re-rendered meanwhile just means 'not yet'."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, ignored_exceptions=(StaleElementReferenceException,)).until(lambda d: fn(d))


def accept_confirm(driver: Any) -> None:
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, WAIT).until(EC.alert_is_present()).accept()


def text_of(driver: Any, selector: str) -> str:
    """The text of the first match, read in one step ('' when there is none yet)."""
    return driver.execute_script("const e = document.querySelector(arguments[0]); return e ? e.textContent : '';", selector)


def current_version(driver: Any) -> str | None:
    """The top row of the versions table, read in one step (the view re-renders after a rollback)."""
    return driver.execute_script("const td = document.querySelector('#versions tbody tr td'); return td && td.textContent;")


def kv_pairs(driver: Any) -> dict[str, str]:
    """The first definition list of the view (the collection's counts), as a dict."""
    dl = wait_for(driver, "dl.kv")
    return dict(zip([e.text for e in dl.find_elements("css selector", "dt")], [e.text for e in dl.find_elements("css selector", "dd")]))


def css(driver: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def login(driver: Any, base: str, token: str, who: str) -> None:
    driver.get(base + "/login")
    driver.delete_all_cookies()
    driver.get(base + "/")
    assert driver.current_url.endswith("/login")
    css(driver, "#token")[0].send_keys(token)
    css(driver, "button[type=submit]")[0].click()
    wait_until(driver, lambda d: who in text_of(d, "#who"))


def fetch(driver: Any, path: str, binary: bool = False) -> dict[str, Any]:
    """GET ``path`` from inside the page (its cookie, its origin)."""
    return driver.execute_async_script(
        """const [path, binary, done] = arguments;
        fetch(path, {credentials: "same-origin"}).then(async (r) => {
          const body = binary ? Array.from(new Uint8Array(await r.arrayBuffer()).slice(0, 8)) : await r.text();
          done({status: r.status, body: body, type: r.headers.get("content-type")});
        }).catch((e) => done({status: 0, body: String(e)}));""",
        path, binary,
    )


def session_client(base: str, token: str) -> httpx.Client:
    c = httpx.Client(base_url=base, follow_redirects=False, timeout=120)
    r = c.post("/login", data={"token": token}, headers={"Origin": base})
    assert r.status_code == 303, r.text
    # the cookie is Secure, which httpx's jar only sends over https (a browser also does on 127.0.0.1)
    name, _, rest = r.headers["set-cookie"].partition("=")
    c.cookies.clear()
    c.headers["Cookie"] = f"{name}={rest.split(';')[0]}"
    return c


def loaded(driver: Any, img: Any) -> bool:
    return bool(driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", img))


# -- a user through the token file -------------------------------------------------------------------


def test_login_gives_a_locked_down_session_cookie(site: dict[str, Any], browser: Any) -> None:
    d = browser
    d.get(site["serve"] + "/")
    assert d.current_url.endswith("/login")
    css(d, "#token")[0].send_keys("not-a-real-token-at-all")
    css(d, "button[type=submit]")[0].click()
    assert "not valid" in wait_for(d, ".error").text
    login(d, site["serve"], LEGAL_TOKEN, "alice")
    assert css(d, "#who")[0].text == "alice (legal)"
    cookies = d.get_cookies()
    port = site["serve"].rsplit(":", 1)[1]
    assert [c["name"] for c in cookies] == [f"__Host-imgrag-{port}"]  # per port: `imgrag ui` keeps its own
    c = cookies[0]
    assert c["httpOnly"] and c["secure"] and c["sameSite"] == "Strict" and c["path"] == "/"
    assert d.execute_script("return document.cookie") == ""  # HttpOnly: no script can read it
    assert LEGAL_TOKEN not in c["value"]  # the token stays on the server


def test_search_shows_region_snippet_why_and_pages(site: dict[str, Any], browser: Any, shots: Path) -> None:
    d = browser
    login(d, site["serve"], LEGAL_TOKEN, "alice")
    q = css(d, "#q")[0]
    q.send_keys("Total amount")
    css(d, "#search-form button[type=submit]")[0].click()
    wait_for(d, ".hit")
    first = css(d, ".hit")[0]
    assert first.find_element("css selector", ".file").text == "contract.png"
    assert "128,000" in first.find_element("css selector", ".snippet").text
    # the matched region is outlined on the thumbnail, in original-image pixels (the line at y≈350)
    r = first.find_element("css selector", "svg.overlay rect.match")
    assert 330 <= float(r.get_attribute("y")) <= 400 and float(r.get_attribute("width")) > 200
    assert first.find_element("css selector", "svg.overlay").get_dom_attribute("viewBox") == "0 0 1200 900"
    # why it ranked: each route with its rank and contribution, largest first (the region re-rank,
    # which now counts the query's concepts in either language, usually leads on a page that prints them)
    why = [row.text for row in first.find_elements("css selector", "table.why tr")]
    assert any(w.startswith("keywords (BM25) #1") for w in why), why
    assert any(w.startswith("region re-rank") for w in why), why
    shares = [float(w.split()[-1]) for w in why]
    assert shares == sorted(shares, reverse=True), why
    thumb = first.find_element("css selector", "img")
    wait_until(d, lambda d: loaded(d, thumb))
    files = [e.text for e in css(d, ".hit .file")]
    assert "memo.png" not in files and "cat.jpg" not in files  # group hr's pages
    screenshot(d, shots, "web-search.png")

    # paging: one hit per page, Next and Previous move through the same ranking with the server's
    # signed cursors (as search_images pages), which the address carries: a reload shows the same page
    d.get(site["serve"] + "/#/search?q=amount&k=1")
    wait_for(d, "#next")
    page1 = css(d, ".hit .file")[0].text
    css(d, "#next")[0].click()
    wait_until(d, lambda d: "hits 2–2" in text_of(d, "#result-summary"))
    page2 = css(d, ".hit .file")[0].text
    assert page2 != page1 and "&c=" in d.current_url
    d.refresh()
    wait_until(d, lambda d: "hits 2–2" in text_of(d, "#result-summary"))
    assert css(d, ".hit .file")[0].text == page2
    css(d, "#prev")[0].click()
    wait_until(d, lambda d: "hits 1–1" in text_of(d, "#result-summary"))
    assert css(d, ".hit .file")[0].text == page1
    assert "c=" not in d.current_url.split("?", 1)[1]  # page 1's own address again
    # a cursor that is not the server's (edited, or from before a restart; a write in between answers
    # the same way: tests/unit/test_web_paging.py) says so, with a button to start over
    css(d, "#next")[0].click()
    wait_until(d, lambda d: "hits 2–2" in text_of(d, "#result-summary"))
    d.get(d.current_url.replace("&c=", "&c=x"))
    wait_until(d, lambda d: "not one this server issued" in text_of(d, "#results .error"))
    assert "start the search over" in text_of(d, "#results .error")
    css(d, "#start-over")[0].click()
    wait_until(d, lambda d: "hits 1–1" in text_of(d, "#result-summary"))
    # the session ends mid-session (idle, or the server restarted): after logging in again the user is
    # back on the view they were going to, not on an empty search
    css(d, "#next")[0].click()
    wait_until(d, lambda d: "hits 2–2" in text_of(d, "#result-summary"))
    d.delete_all_cookies()
    css(d, "#next")[0].click()
    wait_until(d, lambda d: d.current_url.endswith("/login"))
    css(d, "#token")[0].send_keys(LEGAL_TOKEN)
    css(d, "button[type=submit]")[0].click()
    wait_until(d, lambda d: "hits 3–3" in text_of(d, "#result-summary"))
    assert "q=amount" in d.current_url and "&c=" in d.current_url

    from selenium.webdriver.common.keys import Keys

    # keyboard: Enter in the query searches, and the focus lands on the results (not lost to the page top)
    d.get(site["serve"] + "/#/search")
    wait_for(d, "#q").send_keys("amount", Keys.ENTER)
    wait_until(d, lambda d: "hits 1–" in text_of(d, "#result-summary"))
    assert d.execute_script("return document.activeElement.id") == "result-summary"
    d.switch_to.active_element.send_keys(Keys.TAB)
    assert d.execute_script("return document.activeElement.closest('.hit') !== null")

    # the server stops answering mid-session: the page says so (Chromium's own words are "Failed to fetch")
    d.get(site["serve"] + "/#/search?q=amount&k=1")
    wait_for(d, "#next")
    d.execute_cdp_cmd("Network.enable", {})
    offline = {"latency": 0, "downloadThroughput": -1, "uploadThroughput": -1}
    d.execute_cdp_cmd("Network.emulateNetworkConditions", {**offline, "offline": True})
    try:
        css(d, "#next")[0].click()
        wait_until(d, lambda d: text_of(d, "#results .error"))
        assert "The server did not answer" in text_of(d, "#results .error")
    finally:
        d.execute_cdp_cmd("Network.emulateNetworkConditions", {**offline, "offline": False})

    # filters come from the Filters model: quality choices and the seal switch are there
    d.get(site["serve"] + "/#/search")
    wait_for(d, "#search-form")
    names = {e.get_attribute("data-filter") for e in css(d, "[data-filter]")}
    assert {"date_from", "date_to", "quality", "tags", "meta", "has_seal"} <= names
    d.get(site["serve"] + "/#/search?" + "q=amount&f=" + json.dumps({"tags": ["nothing-has-this"]}))
    wait_until(d, lambda d: "no hits" in text_of(d, "#result-summary"))
    assert not js_errors(d)


def test_page_view_overlays_copy_and_escaping(site: dict[str, Any], browser: Any, shots: Path) -> None:
    d = browser
    login(d, site["serve"], LEGAL_TOKEN, "alice")
    d.get(site["serve"] + "/#/search?q=Total%20amount")
    wait_for(d, ".hit")
    css(d, ".hit .actions a")[0].click()  # Open
    wait_for(d, "#page-overlay")
    wait_until(d, lambda d: loaded(d, css(d, "#page-img")[0]))
    cid = site["ids"]["contract"]
    rec = json.loads(fetch(d, f"/api/image/{cid}")["body"])
    n_lines = len(rec["ocr_lines"])
    assert n_lines >= 5
    assert len(css(d, "#page-overlay .layer-ocr rect.ocr")) == n_lines
    assert len(css(d, "#page-overlay .layer-layout rect")) == len(rec["layout"])
    assert len(css(d, "#page-overlay .layer-tile rect")) == len(rec["tiles"]) > 0
    assert len(css(d, "#page-overlay .layer-match rect.match")) == 1  # the hit's region came along
    layer = css(d, "#page-overlay .layer-ocr")[0]
    assert "hidden" in layer.get_attribute("class")
    css(d, "#t-ocr")[0].click()
    assert "hidden" not in layer.get_attribute("class")
    css(d, "#t-layout")[0].click()
    assert "hidden" not in css(d, "#page-overlay .layer-layout")[0].get_attribute("class")
    assert css(d, "#t-table")[0].get_attribute("disabled") is not None  # nothing to show: no table found
    # click a line to copy its text
    item = next(li for li in css(d, "#ocr-lines li") if "Total amount" in li.text)
    item.click()
    wait_until(d, lambda d: "Copied: Total amount" in text_of(d, "#toast"))
    assert "picked" in item.get_attribute("class")
    # ... or reach it with the keyboard and press Enter
    from selenium.webdriver.common.keys import Keys

    other = next(li for li in css(d, "#ocr-lines li") if "Total amount" not in li.text)
    d.execute_script("arguments[0].focus()", other)
    d.switch_to.active_element.send_keys(Keys.ENTER)
    wait_until(d, lambda d: "picked" in other.get_attribute("class"))
    assert f"Copied: {other.text[:20]}" in text_of(d, "#toast")
    # zoom
    before = css(d, "#zoom-label")[0].text
    css(d, "#zoom-in")[0].click()
    after = css(d, "#zoom-label")[0].text
    assert int(after.rstrip("%")) > int(before.rstrip("%"))
    css(d, "#zoom-fit")[0].click()
    # metadata is shown as text, never as markup (it came from whoever indexed the page)
    cell = css(d, "#meta-table td")[0]
    assert cell.text == XSS
    assert not css(d, "#meta-table img") and d.title != "pwned"
    assert "everyone" not in css(d, ".side")[0].text.split("ACL")[1][:20]  # the ACL is legal
    d.execute_script("document.querySelector('.side').scrollTop = 0")
    screenshot(d, shots, "web-page.png")
    css(d, "#t-ocr")[0].click()
    assert "hidden" in layer.get_attribute("class")
    # find similar from the page
    css(d, "#find-similar")[0].click()
    wait_for(d, ".hit")
    assert cid not in [e.get_attribute("data-image-id") for e in css(d, ".hit")]
    assert not js_errors(d)


def test_an_image_the_user_may_not_see_answers_like_one_that_does_not_exist(site: dict[str, Any], browser: Any) -> None:
    d = browser
    login(d, site["serve"], LEGAL_TOKEN, "alice")
    memo = site["ids"]["memo"]
    fake = "f" * len(memo)
    texts = []
    for iid in (memo, fake):
        d.get(site["serve"] + f"/#/image/{iid}")
        texts.append(wait_for(d, ".error").text.replace(iid, "ID"))
    assert texts[0] == texts[1] and "no image" in texts[0]
    c = session_client(site["serve"], LEGAL_TOKEN)
    for path in ("/api/image/{}", "/api/image/{}/page.png", "/api/image/{}/thumb.png", "/api/image/{}/crop.png?bbox=0,0,10,10",
                 "/api/search?like={}"):
        a, b = c.get(path.format(memo)), c.get(path.format(fake))
        assert a.status_code == b.status_code == 404, (path, a.status_code, b.status_code)
        assert a.text.replace(memo, "ID") == b.text.replace(fake, "ID")
    bob = session_client(site["serve"], HR_TOKEN)
    assert bob.get(f"/api/image/{memo}").status_code == 200  # it does exist, for group hr


def test_ask_shows_the_trace_citations_and_exports(site: dict[str, Any], browser: Any, shots: Path) -> None:
    d = browser
    login(d, site["serve"], LEGAL_TOKEN, "alice")
    d.get(site["serve"] + "/#/ask")
    wait_for(d, "#question").send_keys("What is the total amount?")
    css(d, "#ask-button")[0].click()
    wait_for(d, "#answer", timeout=600)
    assert "128,000" in css(d, "#answer-text")[0].text
    assert "self-check passed" in css(d, "#checks")[0].text
    cites = css(d, "#citations .citation")
    assert cites and cites[0].get_attribute("data-image-id") == site["ids"]["contract"]
    wait_until(d, lambda d: loaded(d, cites[0].find_element("css selector", "img.cite-crop")))
    assert cites[0].find_elements("css selector", ".cite-page svg rect.match")
    nodes = [e.text for e in css(d, "#trace .step summary b")]
    assert nodes[:6] == ["plan", "retrieve", "inspect", "answer", "self_check", "finalize"], nodes
    assert css(d, "#trace .call-search_images q")
    # inspect reads the pages' stored OCR (get_metadata); the extractive answerer re-reads nothing
    assert css(d, "#trace .call-get_metadata") and not css(d, "#trace .call-ocr_region")
    screenshot(d, shots, "web-ask.png")
    job = d.current_url.split("#/ask/")[1]
    md = fetch(d, f"/api/ask/{job}/export.md")
    assert md["status"] == 200 and md["body"].startswith("# imgrag answer") and "128,000" in md["body"]
    pdf = fetch(d, f"/api/ask/{job}/export.pdf", binary=True)
    assert pdf["status"] == 200 and bytes(pdf["body"][:5]) == b"%PDF-" and pdf["type"] == "application/pdf"
    # another session cannot read this question's answer
    bob = session_client(site["serve"], HR_TOKEN)
    assert bob.get(f"/api/ask/{job}").status_code == 404
    assert not js_errors(d)


def test_collection_for_a_user_has_counts_but_no_operator_tools(site: dict[str, Any], browser: Any) -> None:
    d = browser
    login(d, site["serve"], LEGAL_TOKEN, "alice")
    d.get(site["serve"] + "/#/collection")
    wait_for(d, "#by-quality")
    kv = kv_pairs(d)
    assert kv["images"] == "3"  # contract, invoice (legal) and the public notice
    assert "2023" in css(d, "#by-year")[0].text
    assert not css(d, "#versions") and not css(d, "#eval-charts")
    c = session_client(site["serve"], LEGAL_TOKEN)
    csrf = c.get("/api/session").json()["csrf"]
    r = c.post("/api/rollback", json={"version": 1}, headers={"Origin": site["serve"], "X-CSRF-Token": csrf})
    assert r.status_code == 403 and "operator" in r.json()["error"]
    assert c.get("/api/eval/retrieval-demo.png").status_code == 403


def test_what_an_attacker_tries_is_refused(site: dict[str, Any]) -> None:
    base = site["serve"]
    port = base.rsplit(":", 1)[1]
    c = session_client(base, LEGAL_TOKEN)
    s = c.get("/api/session").json()
    for path in ("/login", "/static/app.js", "/api/session"):
        h = c.get(path).headers
        assert "script-src 'self'" in h["content-security-policy"] and "frame-ancestors 'none'" in h["content-security-policy"]
        assert h["x-content-type-options"] == "nosniff" and h["x-frame-options"] == "DENY"
    # CSRF: a POST needs this origin and the session's token; both checks run before anything else
    ok = {"Origin": base, "X-CSRF-Token": s["csrf"]}
    assert c.post("/api/ask", json={"question": ""}).status_code == 403
    assert c.post("/api/ask", json={"question": ""}, headers={**ok, "Origin": "http://evil.example"}).status_code == 403
    assert c.post("/api/ask", json={"question": ""}, headers={**ok, "X-CSRF-Token": "guess"}).status_code == 403
    r = c.post("/api/ask", json={"question": ""}, headers=ok)
    assert r.status_code == 400 and r.json()["error"] == "empty question"
    # login only from this server's own form, never through a URL on this server
    fresh = httpx.Client(base_url=base, follow_redirects=False)
    assert fresh.post("/login", data={"token": LEGAL_TOKEN}, headers={"Origin": "http://evil.example"}).status_code == 403
    r = fresh.get("/login", params={"token": LEGAL_TOKEN})
    assert r.status_code == 200 and "set-cookie" not in r.headers
    assert fresh.get("/api/search", params={"q": "amount"}).status_code == 401
    # DNS rebinding: bound to loopback, another host name gets nothing
    assert c.get("/api/session", headers={"Host": f"evil.example:{port}"}).status_code == 421
    assert c.get("/", headers={"Host": f"evil.example:{port}"}).status_code == 421
    assert c.get("/static/viewer.py").status_code == 404 and c.get("/static/..%2Fviewer.py").status_code == 404
    # the MCP endpoint on the same port still wants a bearer token; a session cookie is not one
    assert c.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"}).status_code == 401
    # revoking a token in the token file ends its browser sessions at once
    bob = session_client(base, HR_TOKEN)
    assert bob.get("/api/session").status_code == 200
    original = site["tokens"].read_text()
    try:
        kept = {k: v for k, v in json.loads(original).items() if k != HR_TOKEN}
        site["tokens"].write_text(json.dumps(kept))
        assert bob.get("/api/session").status_code == 401
        assert c.get("/api/session").status_code == 200
    finally:
        site["tokens"].write_text(original)


# -- the local operator ------------------------------------------------------------------------------


def test_imgrag_ui_operator_collection_charts_and_rollback(site: dict[str, Any], browser: Any, shots: Path) -> None:
    d = browser
    ui = site["ui"]
    assert httpx.get(ui + "/login", params={"token": "wrong-" + site["ui_key"]}).status_code == 401
    assert httpx.get(ui + "/login", headers={"Host": "evil.example"}).status_code == 421
    assert httpx.get(ui + "/login", params={"token": site["ui_key"]}, follow_redirects=False).status_code == 303
    d.delete_all_cookies()
    d.get(ui + "/login?token=" + site["ui_key"])
    wait_until(d, lambda d: text_of(d, "#who") == "operator")
    d.get(ui + "/#/collection")
    wait_for(d, "#versions")
    kv = kv_pairs(d)
    assert kv["images"] == "5"
    fig = wait_for(d, "#eval-charts figure img")
    wait_until(d, lambda d: loaded(d, fig))
    versions = [r.find_element("css selector", "td").text for r in css(d, "#versions tbody tr")]
    assert versions == ["3", "2", "1"], versions
    screenshot(d, shots, "web-collection.png")
    # roll back to version 2 (before the public notice was indexed) ...
    css(d, '#versions button[data-version="2"]')[0].click()
    accept_confirm(d)
    wait_until(d, lambda d: current_version(d) == "4")
    kv = kv_pairs(d)
    assert kv["images"] == "4"
    # ... and forward again: a rollback is a version too
    css(d, '#versions button[data-version="3"]')[0].click()
    accept_confirm(d)
    wait_until(d, lambda d: current_version(d) == "5")
    kv = kv_pairs(d)
    assert kv["images"] == "5"
    # the operator sees every group's pages
    d.get(ui + "/#/search?q=Annual%20leave")
    wait_for(d, ".hit")
    assert "memo.png" in [e.text for e in css(d, ".hit .file")]
    assert not js_errors(d)
