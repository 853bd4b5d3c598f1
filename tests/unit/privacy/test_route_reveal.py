"""A route's reveal_pii reaches the channel through the delivery worker: the same record goes
masked to a Slack channel of a plain route and in clear to one of a revealing route."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from junction.pipeline.hub import Hub
from tests.fakes.server import serve_app
from tests.fakes.slack import WEBHOOK_PATH, FakeSlack
from tests.privacy_canaries import CANARY_EMAIL, CANARY_FIRST, CANARY_LAST, CANARY_PHONE

CONFIG = """\
store: "sqlite:///{root}/junction.db"
models_dir: {models}
pipelines:
  leads:
    source: {{connector: csv_file, path: "{root}/inbox/*.csv", settle_seconds: 0}}
    mapping: csv.lead
    workers: 0
    routes:
      - {{name: team, when: "true", to: [slack.team]}}
      - {{name: owner, when: "true", to: [slack.owner], reveal_pii: true}}
channels:
  slack.team:
    webhook_url: "{team}{hook}"
    templates: {{default: {{text: "{text}"}}}}
  slack.owner:
    webhook_url: "{owner}{hook}"
    templates: {{default: {{text: "{text}"}}}}
delivery:
  schedule_s: [0.01]
"""
TEXT = "Lead {{ record.first_name }} {{ record.last_name }} {{ record.email }} {{ record.phone }}"


@pytest.fixture
def slacks() -> Iterator[tuple[FakeSlack, str, FakeSlack, str]]:
    team, owner = FakeSlack(), FakeSlack()
    with serve_app(team.app) as team_url, serve_app(owner.app) as owner_url:
        yield team, team_url, owner, owner_url


def test_a_route_reveals_personal_fields_only_to_its_own_channels(tmp_path: Path, slacks):
    team, team_url, owner, owner_url = slacks
    (tmp_path / "inbox").mkdir()
    (tmp_path / "inbox" / "leads.csv").write_text(
        "lead_id,first_name,last_name,email,phone,country\n"
        f"L-1,{CANARY_FIRST},{CANARY_LAST},{CANARY_EMAIL},{CANARY_PHONE},US\n",
        encoding="utf-8",
    )
    config = tmp_path / "junction.yaml"
    config.write_text(
        CONFIG.format(
            root=tmp_path,
            models=tmp_path / "models",
            team=team_url,
            owner=owner_url,
            hook=WEBHOOK_PATH,
            text=TEXT,
        ),
        encoding="utf-8",
    )
    hub = Hub.from_file(config)
    try:
        hub.run_once(keep_going=True)
        stats = hub.deliver(drain_wait_s=0.5)
    finally:
        hub.close()
    assert stats.delivered == 2
    (masked,) = team.messages
    (clear,) = owner.messages
    assert masked.body["text"] == "Lead Q. V. z***@canary-pii.example +14******179"
    assert clear.body["text"] == f"Lead {CANARY_FIRST} {CANARY_LAST} {CANARY_EMAIL} {CANARY_PHONE}"
