"""One CSV read from every storage fsspec reaches here: local, file://, memory://, HTTP and S3 servers."""

from __future__ import annotations

import fsspec
import pytest

from sora.data import DataConfig, prepare_data
from sora.data.sources import list_files
from sora.errors import SoraError
from tests.data.util import sentiment_rows, write_csv

ROWS = sentiment_rows(30)
EXPECTED = sorted(t for _, t in ROWS)


def _texts(source, **extra) -> list[str]:
    cfg = {
        "source": source,
        "format": "csv",
        "tokenizer": {"kind": "char"},
        "split": {"validation": 0.0, "test": 0.0},
        **extra,
    }
    return sorted(prepare_data(DataConfig.model_validate(cfg)).splits["train"].texts)


def test_local_path_file_url_and_glob_of_shards(tmp_path):
    write_csv(tmp_path / "part-0.csv", ROWS[:10])
    write_csv(tmp_path / "part-1.csv", ROWS[10:])
    assert _texts(str(tmp_path / "part-*.csv")) == EXPECTED
    assert _texts(f"file://{tmp_path}/part-*.csv") == EXPECTED
    assert list_files(str(tmp_path / "part-*.csv")) == [str(tmp_path / "part-0.csv"), str(tmp_path / "part-1.csv")]


def test_memory_filesystem():
    fs = fsspec.filesystem("memory")
    path = "/sora-test/reviews.csv"
    with fs.open(path, "w") as f:
        f.write("label,text\n" + "".join(f'{l},"{t}"\n' for l, t in ROWS))
    try:
        assert _texts(f"memory://{path}") == EXPECTED
    finally:
        fs.rm("/sora-test", recursive=True)


def test_http_server(http_root):
    root, base = http_root
    write_csv(root / "reviews.csv", ROWS)
    assert _texts(f"{base}/reviews.csv") == EXPECTED
    with pytest.raises(SoraError, match="no such file"):
        _texts(f"{base}/missing.csv")


def test_s3_server(s3_endpoint, tmp_path):
    options = {"endpoint_url": s3_endpoint, "key": "testing", "secret": "testing"}
    fs = fsspec.filesystem("s3", **options)
    fs.mkdir("sora-bucket")
    write_csv(tmp_path / "a.csv", ROWS[:12])
    write_csv(tmp_path / "b.csv", ROWS[12:])
    fs.put(str(tmp_path / "a.csv"), "sora-bucket/shards/a.csv")
    fs.put(str(tmp_path / "b.csv"), "sora-bucket/shards/b.csv")
    assert _texts("s3://sora-bucket/shards/*.csv", storage_options=options) == EXPECTED


def test_s3_credentials_from_environment(s3_endpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    fs = fsspec.filesystem("s3", endpoint_url=s3_endpoint, skip_instance_cache=True)
    fs.mkdir("env-bucket")
    write_csv(tmp_path / "a.csv", ROWS)
    fs.put(str(tmp_path / "a.csv"), "env-bucket/a.csv")
    assert _texts("s3://env-bucket/a.csv", storage_options={"skip_instance_cache": True}) == EXPECTED


def test_missing_file_and_unknown_protocol_are_clear_errors(tmp_path):
    with pytest.raises(SoraError, match=r"nothing\.csv: no such file"):
        _texts(str(tmp_path / "nothing.csv"))
    with pytest.raises(SoraError, match="nope://x.csv"):
        _texts("nope://x.csv")


def test_hdfs_without_hadoop_is_a_clear_error():
    with pytest.raises(SoraError, match=r"hdfs://127.0.0.1:9/x.csv: .*(Hadoop|libhdfs|pyarrow)"):
        list_files("hdfs://127.0.0.1:9/x.csv")


def test_corrupt_gzip_is_a_clear_error(tmp_path):
    (tmp_path / "bad.csv.gz").write_bytes(b"this is not gzip")
    with pytest.raises(SoraError, match="bad.csv.gz: cannot read"):
        _texts(str(tmp_path / "bad.csv.gz"))
