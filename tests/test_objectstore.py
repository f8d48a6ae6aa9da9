"""Outputs on an object store (moto's S3 server on 127.0.0.1): the commit rule (uploaded under a
temporary prefix, trusted only once the marker written last is there), local copies, and a
store that does not answer named before anything runs."""

import json
import socket
import subprocess

import pytest

from llm_core.config import PipelineConfig, ProjectConfig, parse_config
from llm_core.errors import PipelineError
from llm_core.objectstore import ObjectStore
from llm_core.preflight import check_services
from llm_core.storage import SUCCESS_MARKER, StageOutput, stage_key
from servers import S3_CREDENTIALS, s3_client, s3_server

BUCKET = "outputs"


@pytest.fixture(scope="module")
def endpoint():
    with s3_server() as url:
        s3_client(url).create_bucket(Bucket=BUCKET)
        yield url


@pytest.fixture(autouse=True)
def credentials(monkeypatch):
    for name, value in S3_CREDENTIALS.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def store(endpoint, request):
    return ObjectStore(f"s3://{BUCKET}/{request.node.name}", {"endpoint_url": endpoint})


def objects(endpoint: str, prefix: str) -> list[str]:
    listed = s3_client(endpoint).list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    return sorted(o["Key"] for o in listed)


def dead_pid() -> int:
    """The pid of a process that has exited."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def build_counting(calls: list):
    def build(out):
        calls.append(out)
        (out / "docs").mkdir()
        (out / "docs" / "part-0.txt").write_text("hello")
        (out / "docs" / SUCCESS_MARKER).write_text("")  # as Spark leaves in each folder it writes
        return {"docs_out": 1}
    return build


CONFIG = ProjectConfig(name="x")  # any section: it only enters the key


def test_an_output_is_published_marker_last_and_reused_from_the_store(store, endpoint, tmp_path):
    calls = []
    built = store.materialize(tmp_path / "machine-a", "crawl", CONFIG, [], "v1", build_counting(calls))
    key = stage_key("crawl", CONFIG, [], "v1")
    assert built.url == f"{store.url}/crawl/{key}" and not built.reused and len(calls) == 1
    prefix = "test_an_output_is_published_marker_last_and_reused_from_the_store/crawl/"
    assert objects(endpoint, prefix) == [f"{prefix}{key}/{name}" for name in (
        "_SUCCESS", "docs/_SUCCESS", "docs/part-0.txt", "stats.json")]
    assert store.is_complete("crawl", key)

    # Another machine (an empty local root) reuses it: fetched, not built.
    again = store.materialize(tmp_path / "machine-b", "crawl", CONFIG, [], "v1", build_counting(calls))
    assert again.reused and len(calls) == 1 and again.url == built.url
    assert (again.path / "docs" / "part-0.txt").read_text() == "hello" and (again.path / "docs" / "_SUCCESS").exists()
    assert again.path == (tmp_path / "machine-b" / "crawl" / key).resolve()
    assert json.loads((again.path / "stats.json").read_text())["docs_out"] == 1


def test_an_unmarked_address_is_never_trusted_and_is_replaced(store, endpoint, tmp_path):
    """A publisher killed after its copies but before its marker leaves files at the address,
    and one killed while uploading leaves its temporary prefix: neither counts as the output."""
    key = stage_key("crawl", CONFIG, [], "v1")
    client = s3_client(endpoint)
    base = "test_an_unmarked_address_is_never_trusted_and_is_replaced/crawl"
    client.put_object(Bucket=BUCKET, Key=f"{base}/{key}/stats.json", Body=b'{"docs_out": 99}')
    client.put_object(Bucket=BUCKET, Key=f"{base}/{key}/docs/stale.txt", Body=b"half")
    client.put_object(Bucket=BUCKET, Key=f"{base}/.tmp-{key}-otherhost-1-abcd/docs/part-0.txt", Body=b"x")
    dead = dead_pid()
    client.put_object(Bucket=BUCKET, Key=f"{base}/.tmp-{key}-{socket.gethostname()}-{dead}-abcd/docs/x", Body=b"x")
    assert not store.is_complete("crawl", key)
    calls = []
    output = store.materialize(tmp_path / "local", "crawl", CONFIG, [], "v1", build_counting(calls))
    assert len(calls) == 1 and output.stats["docs_out"] == 1
    published = objects(endpoint, f"{base}/{key}/")
    assert f"{base}/{key}/docs/stale.txt" not in published, "the debris was removed before the copy"
    assert published[0].endswith(SUCCESS_MARKER)
    left = {k.split("/")[2] for k in objects(endpoint, f"{base}/.tmp-")}
    assert left == {f".tmp-{key}-otherhost-1-abcd"}, "this host's dead publisher's prefix is removed, others' kept"


def test_a_local_build_whose_publish_died_is_published_by_the_next_run(store, tmp_path):
    calls = []
    local = tmp_path / "local"
    from llm_core.storage import materialize

    materialize(local, "crawl", CONFIG, [], "v1", build_counting(calls))  # built, never published
    key = stage_key("crawl", CONFIG, [], "v1")
    assert not store.is_complete("crawl", key)
    output = store.materialize(local, "crawl", CONFIG, [], "v1", build_counting(calls))
    assert len(calls) == 1 and output.reused and store.is_complete("crawl", key)


def test_a_failed_build_publishes_nothing(store, endpoint, tmp_path):
    def fails(out):
        (out / "partial.txt").write_text("x")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        store.materialize(tmp_path, "crawl", CONFIG, [], "v1", fails)
    assert objects(endpoint, "test_a_failed_build_publishes_nothing/") == []


def test_the_data_root_url_stays_a_url_and_the_rest_stays_local(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = parse_config({"project": {"data_root": "s3://bucket/llmpipe", "local_root": "cache"}}).for_run()
    assert config.project.data_root == "s3://bucket/llmpipe" == config.project.store_url
    assert config.project.local_dir == tmp_path / "cache"
    local = PipelineConfig().for_run().project
    assert local.store_url is None and local.local_dir == local.data_root == tmp_path / "data"
    assert parse_config({"project": {"data_root": "file:///srv/data"}}).project.data_root.as_posix() == "/srv/data"


def test_an_unreachable_store_is_named_before_anything_runs(unused_port, tmp_path, monkeypatch):
    config = parse_config({"project": {"data_root": "s3://bucket/llmpipe", "local_root": str(tmp_path),
                                       "storage_options": {"endpoint_url": f"http://127.0.0.1:{unused_port}"}}})
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # botocore retries a refused connection for ~12 s by default
    with pytest.raises(PipelineError, match=r"object store s3://bucket/llmpipe \(project.data_root\)"):
        check_services(config)


def test_a_missing_bucket_is_named(endpoint, tmp_path):
    config = parse_config({"project": {"data_root": "s3://no-such-bucket/x", "local_root": str(tmp_path),
                                       "storage_options": {"endpoint_url": endpoint}}})
    with pytest.raises(PipelineError, match="no-such-bucket"):
        check_services(config)


def test_stage_outputs_say_where_they_live(tmp_path):
    local = StageOutput(stage="crawl", key="k", path=tmp_path, stats={})
    assert local.location == str(tmp_path)
    assert local.model_copy(update={"url": "s3://b/crawl/k"}).location == "s3://b/crawl/k"
