"""Run by test_server.py as ``python -m tests.deploy.slow_server``: a real uvicorn process serving a fake
predictor whose call on the text "slow" says "blocked" on stdout and waits for a line on stdin. The test
sends SIGTERM while that request is in flight, then lets it finish."""

import sys

from sora.deploy.server import bind, create_app, run_app, url_of
from tests.deploy.serving import FakePredictor


class Slow(FakePredictor):
    def predict(self, items, batch_size=32, errors="raise"):
        if "slow" in items:
            print("blocked", flush=True)
            sys.stdin.readline()
        return super().predict(items, batch_size, errors)


if __name__ == "__main__":
    sock = bind("127.0.0.1", 0)
    print(url_of(sock), flush=True)
    run_app(create_app(Slow()), sock, log_level="warning")
