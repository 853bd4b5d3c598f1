"""File drops under ``junction serve``: claimed only when complete, archived once durable,
rejected with a reason when unreadable, resumed from ``processing/`` after a crash."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from outbound.webhook.config import generate_secret
from outbound.webhook.sink import WebhookSink
from scoring.synthetic import write_lead_csv
from tests.integration.helpers import scalar
from tests.serve.helpers import (
    Serve,
    drop,
    pipeline_yaml,
    signal_mid_file,
    wait_for,
    write_serve_config,
)


def _counts(store_url: str) -> tuple[int, int, int]:
    return (
        scalar(store_url, "SELECT count(*) FROM records"),
        scalar(store_url, "SELECT count(DISTINCT id) FROM records"),
        scalar(store_url, "SELECT count(*) FROM quarantine"),
    )


def test_half_written_file_is_claimed_only_once_complete(
    tmp_path: Path, store_url: str, models_dir: Path
) -> None:
    rows = 2000
    src = tmp_path / "leads.csv"
    write_lead_csv(src, rows, seed=3, messy=True)
    data = src.read_bytes()
    cfg = write_serve_config(
        tmp_path, store=store_url, models=models_dir, pipelines=pipeline_yaml(settle=1.0)
    )
    inbox = tmp_path / "inbox"
    target = inbox / "leads.csv"
    with Serve(cfg) as serve:
        serve.wait_ready()
        chunks = [data[i : i + len(data) // 8] for i in range(0, len(data), len(data) // 8)]
        with target.open("wb") as fh:
            # a slow writer: a chunk every 0.4 s for ~3 s, the file never settles meanwhile
            for chunk in chunks:
                fh.write(chunk)
                fh.flush()
                time.sleep(0.4)
                assert target.exists(), "claimed while still being written"
                assert not any((inbox / "processing").iterdir())
                assert scalar(store_url, "SELECT count(*) FROM records") == 0
        finished_writing = time.time()
        wait_for(lambda: (inbox / "processed" / "leads.csv").exists(), 20, "the file archived")
        claim = serve.find("file claimed")
        assert [c["file"] for c in claim] == ["leads.csv"]
        assert serve.stop() == 0
    records, distinct, quarantined = _counts(store_url)
    assert records == distinct
    assert records + quarantined == rows  # every row once: stored or quarantined
    assert quarantined < rows * 0.02
    assert (inbox / "processed" / "leads.csv").read_bytes() == data
    assert not target.exists()
    assert not any((inbox / "processing").iterdir())
    # it was claimed after the last write had settled, not before
    claimed_at = claim[0]["timestamp"]
    assert claimed_at >= time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(finished_writing))


def test_done_marker_gates_the_claim(tmp_path: Path, models_dir: Path) -> None:
    store = f"sqlite:///{tmp_path / 'junction.db'}"
    src = tmp_path / "leads.csv"
    write_lead_csv(src, 300, seed=4, messy=False)
    cfg = write_serve_config(
        tmp_path, store=store, models=models_dir, pipelines=pipeline_yaml(marker=True)
    )
    inbox = tmp_path / "inbox"
    with Serve(cfg) as serve:
        serve.wait_ready()
        drop(src, inbox)
        time.sleep(2.0)  # complete and settled, but not marked: several polls go by
        assert (inbox / "leads.csv").exists()
        assert scalar(store, "SELECT count(*) FROM records") == 0
        (inbox / "leads.csv.done").write_bytes(b"")
        wait_for(lambda: (inbox / "processed" / "leads.csv").exists(), 15, "the file archived")
        assert serve.stop() == 0
    assert scalar(store, "SELECT count(*) FROM records") == 300
    assert not (inbox / "leads.csv.done").exists()


def test_unreadable_file_goes_to_rejected_with_a_reason(
    tmp_path: Path, store_url: str, models_dir: Path
) -> None:
    cfg = write_serve_config(
        tmp_path, store=store_url, models=models_dir, pipelines=pipeline_yaml(encoding="utf-8")
    )
    inbox = tmp_path / "inbox"
    bad = tmp_path / "bad.csv"
    # personal data and a byte that is not UTF-8: the file cannot be read as configured
    bad.write_bytes(b"email,first_name\njane.doe@example.com,J\xe4ne\n")
    good = tmp_path / "good.csv"
    write_lead_csv(good, 200, seed=5, messy=False)
    with Serve(cfg) as serve:
        serve.wait_ready()
        drop(bad, inbox)
        drop(good, inbox)
        wait_for(lambda: (inbox / "rejected" / "bad.csv").exists(), 15, "the bad file rejected")
        wait_for(lambda: (inbox / "processed" / "good.csv").exists(), 15, "the good file archived")
        assert serve.stop() == 0
    reason = (inbox / "rejected" / "bad.csv.reason.txt").read_text(encoding="utf-8")
    assert "code: encoding_error" in reason
    assert "EncodingError" in reason
    assert "jane" not in reason.lower()
    assert "example.com" not in reason
    assert (inbox / "rejected" / "bad.csv").read_bytes() == bad.read_bytes()
    assert scalar(store_url, "SELECT count(*) FROM records") == 200
    assert (
        scalar(
            store_url,
            "SELECT count(*) FROM quarantine WHERE stage = 'extract' "
            "AND error_code = 'encoding_error'",
        )
        == 1
    )
    log = serve.log()
    assert "jane" not in log.lower()


def test_same_content_dropped_twice_is_stored_once(tmp_path: Path, models_dir: Path) -> None:
    store = f"sqlite:///{tmp_path / 'junction.db'}"
    src = tmp_path / "leads.csv"
    write_lead_csv(src, 500, seed=6, messy=False)
    cfg = write_serve_config(tmp_path, store=store, models=models_dir)
    inbox = tmp_path / "inbox"
    with Serve(cfg) as serve:
        serve.wait_ready()
        drop(src, inbox)
        wait_for(lambda: (inbox / "processed" / "leads.csv").exists(), 15, "first copy archived")
        drop(src, inbox, "again.csv")
        wait_for(lambda: (inbox / "processed" / "again.csv").exists(), 15, "second copy archived")
        assert serve.stop() == 0
    assert scalar(store, "SELECT count(*) FROM records") == 500
    assert scalar(store, "SELECT count(*) FROM files") == 1


def test_crash_leaves_the_file_in_processing_and_a_restart_resumes_it_first(
    tmp_path: Path, models_dir: Path
) -> None:
    rows = 8000
    store = f"sqlite:///{tmp_path / 'junction.db'}"
    secret = generate_secret()
    big, late = tmp_path / "big.csv", tmp_path / "late.csv"
    write_lead_csv(big, rows, seed=7, messy=True)
    write_lead_csv(late, 100, seed=8, messy=False)
    inbox = tmp_path / "inbox"
    with WebhookSink(secret, tmp_path / "sink.jsonl") as sink:
        cfg = write_serve_config(
            tmp_path,
            store=store,
            models=models_dir,
            url=sink.url,
            secret=secret,
            pipelines=pipeline_yaml(batch=200),
        )
        with Serve(cfg) as serve:
            serve.wait_ready()
            drop(big, inbox)
            signal_mid_file(serve, store, 800, rows - 3000, signal.SIGKILL)
            serve.wait()
        assert (inbox / "processing" / "big.csv").exists()
        drop(late, inbox)  # arrives while the service is down
        with Serve(cfg) as serve:
            serve.wait_ready()
            wait_for(lambda: (inbox / "processed" / "late.csv").exists(), 30, "late file archived")
            wait_for(lambda: (inbox / "processed" / "big.csv").exists(), 30, "big file archived")
            wait_for(
                lambda: (
                    scalar(store, "SELECT count(*) FROM deliveries WHERE status = 'pending'") == 0
                ),
                30,
                "deliveries sent",
            )
            resumed = serve.find("resuming claimed files")
            claimed = serve.find("file claimed")
            assert serve.stop() == 0
    assert resumed
    assert resumed[0]["files"] == 1
    assert [c["file"] for c in claimed] == ["late.csv"]
    assert resumed[0]["timestamp"] <= claimed[0]["timestamp"]  # the crashed file went first
    records, distinct, quarantined = _counts(store)
    assert records == distinct
    assert records + quarantined == rows + 100
