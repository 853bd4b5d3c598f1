"""The CommerceML HTTP exchange: a 1C client (tests/fakes/onec_exchange.py) against a real server.

1C logs in with HTTP Basic (a Cyrillic password), uploads import.xml and offers.xml in several
chunks, then asks for each to be imported: the route hands each file to the pipeline of that
login which reads its document kind, runs it, and answers ``success`` only once the store holds
the file as done, with every product stored.
"""

# ruff: noqa: RUF001 - Cyrillic test data is the point

from __future__ import annotations

import base64
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from junction.api.context import SCHEDULER
from junction.api.routes import commerceml as exchange_route
from junction.store import tables as t
from tests.api.harness import SIGNING_KEY, ApiHarness, running_api
from tests.fakes.onec_exchange import ExchangeFailed, OneCExchange

PASSWORD = "пароль-Обмена-1С"

CONFIG = """\
store: "sqlite:///{root}/junction.db"
pipelines:
  cml_import:
    source:
      connector: commerceml
      path: {root}/cml/import/*.xml
      document: import
      settle_seconds: 0
      exchange: {{username: сайт, password: "{password}", file_limit: 2048}}
    mapping: commerceml.import
    workers: 0
  cml_offers:
    source:
      connector: commerceml
      path: {root}/cml/offers
      document: offers
      settle_seconds: 0
      exchange: {{username: сайт, password: "{password}"}}
    mapping: commerceml.offers
    workers: 0
  plain:
    source: {{connector: commerceml, path: {root}/cml/plain, settle_seconds: 0}}
    mapping: commerceml.import
    workers: 0
api:
  signing_key: "{signing_key}"
  rate_limit: "1000/second"
"""

IMPORT = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<КоммерческаяИнформация xmlns="urn:1C.ru:commerceml_2" ВерсияСхемы="2.07">'
    "<Классификатор><Ид>c</Ид><Группы><Группа><Ид>g</Ид><Наименование>Обувь</Наименование>"
    "</Группа></Группы></Классификатор><Каталог><Ид>c</Ид><Товары>"
    + "".join(
        f"<Товар><Ид>p-{i}</Ид><Артикул>A-{i}</Артикул><Наименование>Сапоги {i}</Наименование>"
        f"<Группы><Ид>g</Ид></Группы><Описание>{'Кожа. ' * 40}</Описание></Товар>"
        for i in range(30)
    )
    + "</Товары></Каталог></КоммерческаяИнформация>\n"
).encode()

OFFERS = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<КоммерческаяИнформация xmlns="urn:1C.ru:commerceml_2" ВерсияСхемы="2.07">'
    "<ПакетПредложений><Ид>c#</Ид><ТипыЦен><ТипЦены><Ид>t</Ид><Наименование>Розничная</Наименование>"
    "<Валюта>RUB</Валюта></ТипЦены></ТипыЦен><Предложения>"
    + "".join(
        f"<Предложение><Ид>p-{i}</Ид><Наименование>Сапоги {i}</Наименование><Цены><Цена>"
        f"<ИдТипаЦены>t</ИдТипаЦены><ЦенаЗаЕдиницу>1 {i:03d},50</ЦенаЗаЕдиницу></Цена></Цены>"
        f"<Количество>{i}</Количество></Предложение>"
        for i in range(10)
    )
    + "</Предложения></ПакетПредложений></КоммерческаяИнформация>\n"
).encode()


@pytest.fixture
def cml_api(tmp_path: Path) -> Iterator[ApiHarness]:
    for sub in ("import", "offers", "plain"):
        (tmp_path / "cml" / sub).mkdir(parents=True)
    path = tmp_path / "junction.yaml"
    path.write_text(
        CONFIG.format(root=tmp_path, password=PASSWORD, signing_key=SIGNING_KEY), encoding="utf-8"
    )
    with running_api(path) as h:
        yield h


def stored(api: ApiHarness, pipeline: str) -> int:
    with api.ctx.store.begin() as conn:
        n = conn.execute(
            select(func.count()).select_from(t.records).where(t.records.c.pipeline == pipeline)
        ).scalar()
    return int(n or 0)


def client(api: ApiHarness, **kw: str) -> OneCExchange:
    kw.setdefault("password", PASSWORD)
    return OneCExchange(api.base_url, kw.pop("pipeline", "cml_import"), "сайт", **kw)


def test_full_catalogue_exchange_stores_before_success(cml_api: ApiHarness) -> None:
    with client(cml_api) as onec:
        onec.checkauth()
        assert onec.cookie is not None
        assert onec.cookie[0] == "JUNCTION_CML"
        onec.init()
        assert (onec.zip_allowed, onec.file_limit) == (False, 2048)
        assert onec.send_file("import.xml", IMPORT) > 2  # chunked
        assert onec.send_file("offers.xml", OFFERS) > 1
        assert onec.send_file("import_files/ab/photo.jpg", b"\xff\xd8 not read") == 1
        onec.import_file("import.xml")
        assert stored(cml_api, "cml_import") == 30  # durably stored when success was answered
        onec.import_file("offers.xml")  # handed to the offers pipeline of the same login
        assert stored(cml_api, "cml_offers") == 10
        onec.import_file("import.xml")  # 1C repeats import: answered from the store
        assert stored(cml_api, "cml_import") == 30
    assert list((cml_api.root / "cml" / "import").glob("*.xml")) == []  # archived after the run
    assert len(list(cml_api.root.glob("**/processed/import.*.xml"))) == 1
    with cml_api.ctx.store.begin() as conn:
        rows = conn.execute(
            select(t.records.c.payload).where(t.records.c.pipeline == "cml_offers")
        ).all()
    texts = [str(r[0]) for r in rows]
    assert any("1005.50" in x for x in texts), texts[:1]


def test_wrong_password_and_no_session(cml_api: ApiHarness) -> None:
    with client(cml_api, password="неверный") as onec, pytest.raises(ExchangeFailed) as info:
        onec.checkauth()
    assert info.value.status == 401
    assert info.value.text.startswith("failure\n")
    with client(cml_api) as onec:
        r = onec._call("init")  # no cookie, no Basic
        assert r.status_code == 401
        assert r.text.startswith("failure")
        onec.cookie = ("JUNCTION_CML", "forged")
        assert onec._call("init").status_code == 401


def test_basic_credentials_in_utf8_work_on_every_call(cml_api: ApiHarness) -> None:
    raw = base64.b64encode(f"сайт:{PASSWORD}".encode()).decode()
    with httpx.Client(base_url=cml_api.base_url) as h:
        r = h.get(
            "/exchange/commerceml/cml_import",
            params={"type": "catalog", "mode": "init"},
            headers={"Authorization": f"Basic {raw}"},
        )
    assert r.status_code == 200
    assert r.text == "zip=no\nfile_limit=2048"


def test_unknown_pipeline_or_no_exchange_login(cml_api: ApiHarness) -> None:
    for pipeline in ("nope", "plain"):
        with client(cml_api, pipeline=pipeline) as onec, pytest.raises(ExchangeFailed) as info:
            onec.checkauth()
        assert info.value.status == 404


def test_import_without_upload_and_hostile_names(cml_api: ApiHarness) -> None:
    with client(cml_api) as onec:
        onec.checkauth()
        onec.init()
        with pytest.raises(ExchangeFailed) as info:
            onec.import_file("never.xml")
        assert "was not uploaded" in info.value.text
        for bad in ("../../etc/passwd.xml", ".hidden.xml", ""):
            r = onec._call("file", content=b"<x/>", filename=bad)
            assert r.text.startswith("failure"), bad


def test_a_broken_file_is_a_failure_not_a_success(cml_api: ApiHarness) -> None:
    with client(cml_api) as onec:
        onec.checkauth()
        onec.init()
        onec.send_file("import.xml", IMPORT[:-300])
        with pytest.raises(ExchangeFailed) as info:
            onec.import_file("import.xml")
    assert info.value.text.startswith("failure\nimport.xml")


def test_sale_query_answers_an_empty_orders_document(cml_api: ApiHarness) -> None:
    with client(cml_api, exchange_type="sale") as onec:
        onec.checkauth()
        r = onec.query()
        assert r.status_code == 200
        assert "КоммерческаяИнформация" in r.text
        assert onec.success() == "success"


class FakeScheduler:
    """What ``junction serve`` offers: run now (here in a thread), or never when ``idle``."""

    def __init__(self, api: ApiHarness, *, idle: bool = False) -> None:
        self.api = api
        self.idle = idle
        self.requested: list[str] = []
        self.threads: list[threading.Thread] = []

    def request_run(self, pipeline: str) -> str:
        self.requested.append(pipeline)
        if not self.idle:
            runner = self.api.ctx.hub.runner(pipeline)
            thread = threading.Thread(target=runner.run_once)
            thread.start()
            self.threads.append(thread)
        return "queued"

    def pause(self, pipeline: str) -> None: ...

    def resume(self, pipeline: str) -> None: ...

    def ready(self) -> bool:
        return True


def test_under_serve_the_scheduler_runs_the_pipeline(cml_api: ApiHarness) -> None:
    scheduler = FakeScheduler(cml_api)
    cml_api.ctx.extras[SCHEDULER] = scheduler
    with client(cml_api) as onec:
        onec.run_catalog({"import.xml": IMPORT})
    for thread in scheduler.threads:
        thread.join()
    assert scheduler.requested == ["cml_import"]
    assert stored(cml_api, "cml_import") == 30


def test_progress_while_the_run_has_not_finished(
    cml_api: ApiHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(exchange_route, "WAIT_S", 0.3)
    scheduler = FakeScheduler(cml_api, idle=True)
    cml_api.ctx.extras[SCHEDULER] = scheduler
    with client(cml_api) as onec:
        onec.checkauth()
        onec.init()
        onec.send_file("import.xml", IMPORT)
        r = onec._call("import", filename="import.xml")
        assert r.text == "progress"
        scheduler.idle = False  # the scheduler gets to it: 1C's next call sees the verdict
        scheduler.request_run("cml_import")
        for thread in scheduler.threads:
            thread.join()
        assert onec.import_file("import.xml").startswith("success")
    assert stored(cml_api, "cml_import") == 30


def test_password_guessing_is_throttled(cml_api: ApiHarness) -> None:
    with client(cml_api, password="guess") as onec:
        statuses = []
        for _ in range(12):
            with pytest.raises(ExchangeFailed) as info:
                onec.checkauth()
            statuses.append(info.value.status)
    assert statuses[:10] == [401] * 10
    assert statuses[10:] == [429, 429]
    with client(cml_api) as onec, pytest.raises(ExchangeFailed) as info:
        onec.checkauth()  # even the right password waits out the window
    assert info.value.status == 429


def test_reupload_in_one_session_and_stale_spool_cleanup(cml_api: ApiHarness) -> None:
    spool = cml_api.root / "cml" / "import" / ".commerceml-spool" / "old-session"
    spool.mkdir(parents=True)
    stale = spool / "import.xml.part"
    stale.write_bytes(b"<half")
    os.utime(stale, (1, 1))
    with client(cml_api) as onec:
        onec.checkauth()
        onec.init()
        assert not stale.exists()
        onec.send_file("import.xml", IMPORT)
        onec.import_file("import.xml")
        second = IMPORT.replace(b">p-0<", b">p-new<")
        onec.send_file("import.xml", second)  # same name, new content: imported again
        onec.import_file("import.xml")
    assert stored(cml_api, "cml_import") == 60
