"""The HTTP server, run for real: uvicorn on 127.0.0.1 on a free port, clients over TCP. Concurrent clients are
batched and each gets its own answer; generation streams the same text it answers whole; every limit, the API key
rule, the metrics, and a graceful stop on SIGTERM with a request in flight. Waits poll with a deadline; what must
happen together is arranged with events (a held model call), not timings."""

import base64
import json
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from sora.deploy import Predictor
from sora.deploy.limits import ServeSettings
from sora.deploy.server import create_app
from tests.deploy.serving import (
    DEADLINE_S,
    FakePredictor,
    Holding,
    metric,
    running,
    tiny_classifier_run,
    tiny_lm,
    wait_until,
)
from tests.helpers import run_cli

ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def classifier(tmp_path_factory) -> Predictor:
    return Predictor.load(tiny_classifier_run(tmp_path_factory.mktemp("serve")), backend="torch")


@pytest.fixture(scope="module")
def lm(tmp_path_factory) -> Predictor:
    return Predictor.load(tiny_lm(tmp_path_factory.mktemp("serve_lm")), backend="torch")


def post_all(url: str, texts: list[str], started: list) -> list:
    """One thread per text, each posting it alone; the answers in text order."""
    answers = [None] * len(texts)

    def client(i: int) -> None:
        answers[i] = httpx.post(f"{url}/v1/predict", json={"inputs": [texts[i]]}, timeout=DEADLINE_S)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    started.extend(threads)
    return answers


def test_concurrent_clients_are_batched_and_each_gets_its_own_answer(classifier):
    """16 clients with the real Predictor: the first call is held until the 15 others wait in the queue, so
    they share the next call; every client gets the prediction the Predictor makes for its text alone."""
    texts = [f"{'good great' if i % 2 else 'bad dull'} film number {i}" for i in range(16)]
    expected = classifier.predict(texts)
    held = Holding(classifier)
    app = create_app(held, ServeSettings(max_batch=32, max_wait_ms=0))
    threads = []
    with running(app) as url:
        first = post_all(url, texts[:1], threads)
        assert held.entered.wait(DEADLINE_S)
        rest = post_all(url, texts[1:], threads)
        wait_until(lambda: metric(url, "sora_batch_waiting_items") == 15, "15 items to queue")
        held.release.set()
        for t in threads:
            t.join(DEADLINE_S)
        answers = first + rest
        assert [a.status_code for a in answers] == [200] * 16
        for answer, want in zip(answers, expected):
            (got,) = answer.json()["predictions"]
            assert got["label"] == want["label"]
            assert got["scores"] == pytest.approx(want["scores"], abs=1e-5)
        assert metric(url, "sora_batch_size_count") == 2  # one held call of 1, then one of 15
        assert metric(url, "sora_batch_size_sum") == 16
        assert metric(url, "sora_requests_total", route="/v1/predict", method="POST", status="200") == 16
    assert not held.overlapped


def sse(response: httpx.Response) -> list[str]:
    """The data lines of a server-sent event stream."""
    return [line[len("data: ") :] for line in response.iter_lines() if line.startswith("data: ")]


def test_generation_streams_the_pieces_of_the_text_it_answers_whole(lm):
    request = {"prompt": "It is a", "max_new_tokens": 24, "temperature": 0}
    direct = "".join(lm.generate("It is a", max_new_tokens=24, temperature=0))
    with running(create_app(lm)) as url:
        whole = httpx.post(f"{url}/v1/generate", json=request, timeout=DEADLINE_S)
        assert whole.status_code == 200, whole.text
        with httpx.stream("POST", f"{url}/v1/generate", json={**request, "stream": True}, timeout=DEADLINE_S) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            events = sse(r)
        empty = httpx.post(f"{url}/v1/generate", json={"prompt": "\u2603\u2603", "stream": True}, timeout=DEADLINE_S)
    assert events[-1] == "[DONE]"
    pieces = [json.loads(e)["text"] for e in events[:-1]]
    assert len(pieces) > 1 and "".join(pieces) == whole.json()["text"] == direct
    assert empty.status_code == 422 and "tokenizer" in empty.json()["detail"]  # refused before the stream starts


def test_generate_on_a_classifier_is_refused_with_a_message():
    with running(create_app(FakePredictor())) as url:
        r = httpx.post(f"{url}/v1/generate", json={"prompt": "hello"})
    assert r.status_code == 400
    assert "classification model" in r.json()["detail"] and "/v1/predict" in r.json()["detail"]


LIMITS = ServeSettings(max_body_bytes=2000, max_items=4, max_chars=50, max_item_bytes=30, max_new_tokens=10)


def messages(r: httpx.Response) -> list[str]:
    return [d["msg"] for d in r.json()["detail"]]


def test_every_limit_answers_with_a_message_that_names_it():
    with running(create_app(FakePredictor("lm"), LIMITS)) as url:
        post = lambda path, body, **kw: httpx.post(f"{url}{path}", json=body, **kw)  # noqa: E731
        big = post("/v1/predict", {"inputs": ["x" * 2100]})
        chunked = httpx.post(f"{url}/v1/predict", content=iter([b'{"inputs": ["', b"x" * 2100, b'"]}']))
        many = post("/v1/predict", {"inputs": ["a", "b", "c", "d", "e"]})
        long = post("/v1/predict", {"inputs": ["a", "b", "y" * 51]})
        prompt = post("/v1/generate", {"prompt": "z" * 51})
        tokens = post("/v1/generate", {"prompt": "hello", "max_new_tokens": 11})
        attention = httpx.get(f"{url}/v1/attention", params={"text": "w " * 26})
        fits = post("/v1/predict", {"inputs": ["a", "b", "c", "y" * 50]})
    assert big.status_code == 413 and chunked.status_code == 413
    assert big.json()["detail"] == "request body is 2,115 bytes, over the limit of 2,000 bytes (--max-body-bytes)"
    assert chunked.json()["detail"] == "request body is over the limit of 2,000 bytes (--max-body-bytes)"
    assert many.status_code == 422 and messages(many) == [
        "inputs: 5 items, over the limit of 4 per request (--max-items)"
    ]
    assert long.status_code == 422 and long.json()["detail"][0]["loc"] == ["body", "inputs", 2]
    assert messages(long) == ["inputs[2]: 51 characters, over the limit of 50 characters (--max-chars)"]
    assert prompt.status_code == 422 and "limit of 50 characters (--max-chars)" in messages(prompt)[0]
    assert tokens.status_code == 422 and messages(tokens) == [
        "max_new_tokens: 11 tokens, over the limit of 10 tokens (--max-new-tokens)"
    ]
    assert attention.status_code == 422 and "(--max-chars)" in messages(attention)[0]
    assert fits.status_code == 200


def test_bad_inputs_answer_422_naming_the_item():
    with running(create_app(FakePredictor(), LIMITS)) as url:
        empty = httpx.post(f"{url}/v1/predict", json={"inputs": ["good", " ", "bad"]})
        wrong_kind = httpx.post(f"{url}/v1/predict", json={"inputs": ["good", {"image": "AAAA"}]})
        missing = httpx.post(f"{url}/v1/predict", json={"texts": ["good"]})
        not_json = httpx.post(f"{url}/v1/predict", content=b"{not json", headers={"content-type": "application/json"})
    assert empty.status_code == 422 and messages(empty) == ["inputs[1]: empty text"]
    assert wrong_kind.status_code == 422 and messages(wrong_kind) == ["inputs[1]: this model reads text: send a string"]
    assert missing.status_code == 422 and missing.json()["detail"][0]["loc"] == ["body", "inputs"]  # FastAPI's own
    assert not_json.status_code == 422


def test_images_arrive_as_base64_within_their_own_limit():
    b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731
    with running(create_app(FakePredictor(input="image"), LIMITS)) as url:
        ok = httpx.post(f"{url}/v1/predict", json={"inputs": [{"image": b64(b"\x89PNG" + b"\0" * 20)}]})
        url_form = httpx.post(f"{url}/v1/predict", json={"inputs": [{"image": "data:image/png;base64," + b64(b"ab")}]})
        big = httpx.post(f"{url}/v1/predict", json={"inputs": [{"image": b64(b"\0" * 31)}]})
        garbled = httpx.post(f"{url}/v1/predict", json={"inputs": [{"image": "not base64!"}]})
        text = httpx.post(f"{url}/v1/predict", json={"inputs": ["a text"]})
    assert ok.status_code == 200 and ok.json()["predictions"][0]["bytes"] == 24
    assert url_form.status_code == 200 and url_form.json()["predictions"][0]["bytes"] == 2
    assert messages(big) == ["inputs[0].image: 31 bytes, over the limit of 30 bytes (--max-item-bytes)"]
    assert messages(garbled) == ["inputs[0].image: not valid base64"]
    assert messages(text) == ['inputs[0]: this model reads image: send {"image": BASE64}']


def test_the_api_key_guards_v1_and_leaves_the_page_health_and_metrics_open():
    app = create_app(FakePredictor(), ServeSettings(api_key="s3cret"))
    with running(app) as url:
        body = {"inputs": ["good"]}
        none = httpx.post(f"{url}/v1/predict", json=body)
        wrong = httpx.post(f"{url}/v1/predict", json=body, headers={"Authorization": "Bearer nope"})
        bad_body = httpx.post(f"{url}/v1/predict", json={"wrong": 1})
        bearer = httpx.post(f"{url}/v1/predict", json=body, headers={"Authorization": "Bearer s3cret"})
        header = httpx.post(f"{url}/v1/predict", json=body, headers={"X-API-Key": "s3cret"})
        attention = httpx.get(f"{url}/v1/attention", params={"text": "a b"})
        open_ = {path: httpx.get(f"{url}{path}").status_code for path in ("/", "/healthz", "/metrics", "/docs")}
        health = httpx.get(f"{url}/healthz").json()
        schemes = httpx.get(f"{url}/openapi.json").json()["components"]["securitySchemes"]
    for r in (none, wrong, bad_body, attention):  # no key: 401 before the body is even judged
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert "API key" in r.json()["detail"]
    assert bearer.status_code == 200 and header.status_code == 200
    assert open_ == {"/": 200, "/healthz": 200, "/metrics": 200, "/docs": 200}
    assert health["api_key_required"] is True and "s3cret" not in json.dumps(health)
    assert set(schemes) == {"HTTPBearer", "APIKeyHeader"}


class Failing(FakePredictor):
    def predict(self, items, batch_size=32, errors="raise"):
        raise RuntimeError("the model fell over")


def test_metrics_count_requests_errors_latency_and_batches():
    with running(create_app(Failing())) as url:
        for _ in range(3):
            httpx.get(f"{url}/healthz")
        failed = httpx.post(f"{url}/v1/predict", json={"inputs": ["good"]})
        httpx.post(f"{url}/v1/predict", json={})
        httpx.get(f"{url}/no/such/page")
        response = httpx.get(f"{url}/metrics")
        text = response.text
        assert metric(url, "sora_requests_total", route="/healthz", method="GET", status="200") == 3
        assert metric(url, "sora_request_errors_total", route="/v1/predict", kind="server") == 1
        assert metric(url, "sora_request_errors_total", route="/v1/predict", kind="client") == 1
        assert metric(url, "sora_requests_total", route="other", method="GET", status="404") == 1
        assert metric(url, "sora_request_seconds_count", route="/healthz") == 3
        assert metric(url, "sora_batch_size_count") == 1  # the failed call was a batch too
    assert response.headers["content-type"].startswith("text/plain")
    assert failed.status_code == 500 and "the model fell over" in failed.json()["detail"]
    for name in ("sora_request_seconds_bucket", "sora_requests_in_flight", "sora_batch_seconds", "sora_batch_size"):
        assert name in text


def test_attention_has_every_head_named_with_its_importance(classifier):
    with running(create_app(classifier)) as url:
        health = httpx.get(f"{url}/healthz").json()
        got = httpx.get(f"{url}/v1/attention", params={"text": "good great film"}).json()
        posted = httpx.post(f"{url}/v1/attention", json={"text": "good great film"}).json()
        wrong = httpx.post(f"{url}/v1/attention", json={"image": "AAAA"})
    assert health["analysis"] is True and health["labels"] == ["fresh", "rotten"]
    assert got == posted
    T = len(got["tokens"])
    assert [[h["name"] for h in layer["heads"]] for layer in got["layers"]] == [
        [f"layers.{i}.attn.head.{h}" for h in range(4)] for i in range(2)
    ]
    head = got["layers"][0]["heads"][1]
    assert len(head["pattern"]) == T and all(sum(row) == pytest.approx(1, abs=1e-3) for row in head["pattern"])
    assert (head["importance"], head["rank"], head["type"]) == (0.9, 2, "broad")
    assert got["importance"]["method"] == "gradient" and got["importance"]["source"].endswith("analysis.json")
    assert wrong.status_code == 422


def test_sora_serve_loads_the_model_says_its_url_and_serves_it(classifier, monkeypatch, capsys):
    """The command as a user runs it, up to uvicorn (taken over here: the next test runs uvicorn's SIGTERM)."""
    started = {}
    monkeypatch.setattr("sora.deploy.server.run_app", lambda app, sock, **kw: started.update(app=app, sock=sock))
    monkeypatch.setenv("SORA_API_KEY", "from-env")
    answer = run_cli(capsys, "serve", classifier.folder, "--port", "0", "--backend", "torch", "--max-items", "3")
    assert answer.code == 0, answer.stderr
    started["sock"].close()
    assert "serving" in answer.out and "http://127.0.0.1:" in answer.out and "/docs" in answer.out
    with running(started["app"]) as url:
        r = httpx.post(f"{url}/v1/predict", json={"inputs": ["good film"]}, headers={"X-API-Key": "from-env"})
        many = httpx.post(f"{url}/v1/predict", json={"inputs": ["a"] * 4}, headers={"X-API-Key": "from-env"})
    assert r.status_code == 200 and r.json()["predictions"][0]["label"] in ("fresh", "rotten")
    assert many.status_code == 422
    missing = run_cli(capsys, "serve", classifier.folder.parent / "nothing", "--port", "0")
    assert "nothing" in missing.error()


def test_sigterm_lets_the_request_in_flight_finish():
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.deploy.slow_server"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line.strip()) for line in proc.stdout], daemon=True).start()
    try:
        url = lines.get(timeout=60)  # the first line: where it listens (a fresh interpreter imports torch)
        wait_until(lambda: _up(url), "the server to answer /healthz")
        answer = {}
        client = threading.Thread(
            target=lambda: answer.update(r=httpx.post(f"{url}/v1/predict", json={"inputs": ["slow"]}, timeout=60))
        )
        client.start()
        assert lines.get(timeout=DEADLINE_S) == "blocked"  # the request is inside the model call
        proc.send_signal(signal.SIGTERM)
        wait_until(lambda: not _up(url), "the server to stop taking connections")
        proc.stdin.write("go\n")
        proc.stdin.flush()
        client.join(DEADLINE_S)
        assert answer["r"].status_code == 200
        assert answer["r"].json()["predictions"] == [{"label": "neg", "score": 0.8, "scores": {"neg": 0.8, "pos": 0.2}}]
        assert proc.wait(DEADLINE_S) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it is done
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False
