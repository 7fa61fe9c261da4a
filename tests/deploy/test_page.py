"""The particle explorer page in a real browser: headless Chromium (Debian's package) driven by playwright
through ``executable_path``, so no browser is downloaded. A review typed and submitted shows its label and the
attention of its heads; an LM's continuation streams in; a question is answered and its answer marked in the
context; a server with an API key gets it from the page."""

import shutil

import pytest
from playwright.sync_api import sync_playwright

from sora.deploy import Predictor
from sora.deploy.limits import ServeSettings
from sora.deploy.server import create_app
from tests.deploy.serving import running, tiny_classifier_run, tiny_lm
from tests.deploy.tiny_folders import QUESTIONS, image_classifier, images, span_model, write_png

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WAIT_MS = 30_000

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium binary: scripts/system_packages.sh installs Debian's chromium (needs root)"
)


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def classifier(tmp_path_factory) -> Predictor:
    return Predictor.load(tiny_classifier_run(tmp_path_factory.mktemp("page")), backend="torch")


@pytest.fixture
def page(browser):
    """A fresh page that fails the test on any script error."""
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.set_default_timeout(WAIT_MS)
    yield page
    page.close()
    assert not errors, errors


def test_a_review_gets_its_label_and_the_attention_of_every_head(classifier, page, tmp_path):
    with running(create_app(classifier)) as url:
        page.goto(url)
        page.fill("#text", "a good, great and fine film")
        page.click("#go")
        label = page.wait_for_selector("#label").inner_text()
        page.wait_for_selector("#heads li")
        assert label in ("fresh", "rotten")
        assert page.locator(".bar").count() == 2  # a bar per class
        assert page.locator("#heads li").count() == 4
        options = page.locator("#head option").all_inner_texts()
        assert options[0] == "layers.0.attn.head.0 · importance 1.00" and len(options) == 4
        box = page.locator("#map").bounding_box()
        assert box["width"] > 100 and box["height"] > 50  # the heat map is drawn
        page.select_option("#layer", "1")
        assert page.locator("#map-title").inner_text().startswith("layers.1.attn.head.0")
        page.locator("#heads li").nth(2).click()
        assert page.locator("#map-title").inner_text().startswith("layers.1.attn.head.2 · importance 0.40 (#7)")
        page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
    assert (tmp_path / "page.png").stat().st_size > 10_000


def test_an_lm_prompt_streams_its_continuation(tmp_path, page):
    lm = Predictor.load(tiny_lm(tmp_path), backend="torch")
    expected = "".join(lm.generate("It is", max_new_tokens=12, temperature=0))
    with running(create_app(lm)) as url:
        page.goto(url)
        page.wait_for_function("document.getElementById('go').textContent === 'Continue'")
        page.fill("#text", "It is")
        page.fill("#max-new", "12")
        page.fill("#temperature", "0")
        page.click("#go")
        page.wait_for_selector("#heads li")  # attention follows once the stream has ended
        assert page.locator("#continuation").text_content() == expected


def test_an_uploaded_image_is_classified_and_its_patches_attention_drawn(tmp_path, page):
    vision = Predictor.load(image_classifier(tmp_path), backend="torch")
    png = write_png(tmp_path / "x.png", images(1)[0])
    (expected,) = vision.predict([png])
    with running(create_app(vision)) as url:
        page.goto(url)
        page.wait_for_selector("#file-row:not([hidden])")
        page.set_input_files("#file", str(png))  # choosing a file submits it
        assert page.wait_for_selector("#label").inner_text() == expected["label"]
        page.wait_for_selector("#heads li")
        assert page.locator("#preview img").count() == 1
        assert page.locator("#map-title").inner_text() == "layers.0.attn.head.0"


def test_a_question_is_answered_and_the_answer_marked_in_its_context(tmp_path, page):
    qa = Predictor.load(span_model(tmp_path), backend="torch")
    question = QUESTIONS[0]
    (expected,) = qa.predict([question])
    with running(create_app(qa)) as url:
        page.goto(url)
        page.wait_for_selector("#qa-row:not([hidden])")
        assert page.locator("#text-row").is_hidden() and page.locator("#go").inner_text() == "Answer"
        page.fill("#question", question["question"])
        page.fill("#context", question["context"])
        page.click("#go")
        assert page.wait_for_selector("#answer").inner_text() == expected["answer"]
        assert page.locator("#answer-context").inner_text() == question["context"]
        page.wait_for_selector("#heads li")  # the attention of the question's window
        assert page.locator("#heads li").count() == 2


def test_the_page_asks_for_the_api_key_and_uses_it(classifier, page):
    with running(create_app(classifier, ServeSettings(api_key="s3cret"))) as url:
        page.goto(url)
        page.wait_for_selector("#keybar:not([hidden])")
        page.fill("#text", "dull and poor")
        page.fill("#key", "s3cret")
        page.click("#key-form button")
        page.wait_for_selector("#label")
        page.wait_for_selector("#heads li")
        assert page.evaluate("sessionStorage.getItem('sora-key')") == "s3cret"


def test_the_openapi_page_works_offline(classifier, page):
    """Swagger UI's files come from the app itself (no CDN): the page lists every endpoint."""
    with running(create_app(classifier)) as url:
        requests = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto(f"{url}/docs")
        page.wait_for_selector(".opblock-summary-path")
        paths = page.locator(".opblock-summary-path").all_inner_texts()
    assert {"/v1/predict", "/v1/generate", "/healthz"} <= set(paths)
    assert all(r.startswith(url) for r in requests), [r for r in requests if not r.startswith(url)]
