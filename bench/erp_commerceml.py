"""CommerceML catalogue read: the ``commerceml`` connector against a bare hardened iterparse.

``run()`` writes (once, under ``bench/data/``) a UTF-8-with-BOM ``import.xml`` of ``products``
Товар elements modelled on real 1C 2.07 catalogues (classifier with nested groups and
properties, barcodes, OKEI units with a trailing space, property values with decimal commas,
requisites), then measures in the same run:

* ``raw``: ``lxml.etree.iterparse`` with the hardened options, events for ``Товар`` only, a dict
  ``{local name: text}`` of its direct children, and the same element clearing: the floor of
  any streaming reader of the file;
* ``connector``: ``CommerceMLConnector.read`` (scan pass: SHA-256 + strict decoding, kind
  detection, flattening with group/property resolution, batches).

It prints both records/s and their ratio (goal >= 0.3) and returns the figures.
"""

# ruff: noqa: RUF001, E501 - the catalogue template is Cyrillic XML, one element per line

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any

from lxml import etree

from connectors.commerceml import CommerceMLConfig, CommerceMLConnector
from connectors.safe_xml import ITERPARSE_OPTIONS

DATA = Path(__file__).resolve().parent / "data"
GROUPS = 40
PROPS = 12

_HEAD = """<?xml version="1.0" encoding="UTF-8"?>
<КоммерческаяИнформация xmlns="urn:1C.ru:commerceml_2" xmlns:xs="http://www.w3.org/2001/XMLSchema" \
xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" ВерсияСхемы="2.07" ДатаФормирования="2024-05-06T10:11:12">
\t<Классификатор>
\t\t<Ид>b21db898-7f82-46d8-a5ca-7c4f1d200a13</Ид>
\t\t<Наименование>Классификатор (Каталог)</Наименование>
\t\t<Владелец><Ид>e23f663b-18fc-11e7-80c2-0cc47ab29cd1</Ид><Наименование>Рога и Копыта ООО</Наименование><ИНН>2500000000</ИНН></Владелец>
\t\t<Группы>
{groups}
\t\t</Группы>
\t\t<Свойства>
{props}
\t\t</Свойства>
\t</Классификатор>
\t<Каталог СодержитТолькоИзменения="false">
\t\t<Ид>b21db898-7f82-46d8-a5ca-7c4f1d200a13</Ид>
\t\t<ИдКлассификатора>b21db898-7f82-46d8-a5ca-7c4f1d200a13</ИдКлассификатора>
\t\t<Наименование>Каталог</Наименование>
\t\t<Товары>
"""
_TAIL = "\t\t</Товары>\n\t</Каталог>\n</КоммерческаяИнформация>\n"
_PRODUCT = """\t\t\t<Товар>
\t\t\t\t<Ид>{id}</Ид>
\t\t\t\t<Штрихкод>{barcode}</Штрихкод>
\t\t\t\t<Артикул>PM-{i}-WP</Артикул>
\t\t\t\t<Наименование>Портативный коврик Portable {w}x{h} см, вариант {i}</Наименование>
\t\t\t\t<БазоваяЕдиница Код="796 " НаименованиеПолное="Штука" МеждународноеСокращение="PCE">
\t\t\t\t\t<Пересчет><Единица>796</Единица><Коэффициент>1</Коэффициент></Пересчет>
\t\t\t\t</БазоваяЕдиница>
\t\t\t\t<Группы><Ид>{group}</Ид></Группы>
\t\t\t\t<Описание/>
\t\t\t\t<Изготовитель><Ид>018b11b8-18fa-11e7-80c2-0cc47ab29cd1</Ид><Наименование>Crazy Boom</Наименование></Изготовитель>
\t\t\t\t<ЗначенияСвойств>
{values}
\t\t\t\t</ЗначенияСвойств>
\t\t\t\t<СтавкиНалогов><СтавкаНалога><Наименование>НДС</Наименование><Ставка>20</Ставка></СтавкаНалога></СтавкиНалогов>
\t\t\t\t<ЗначенияРеквизитов>
\t\t\t\t\t<ЗначениеРеквизита><Наименование>ВидНоменклатуры</Наименование><Значение>Коврики</Значение></ЗначениеРеквизита>
\t\t\t\t\t<ЗначениеРеквизита><Наименование>ТипНоменклатуры</Наименование><Значение>Товар</Значение></ЗначениеРеквизита>
\t\t\t\t\t<ЗначениеРеквизита><Наименование>Полное наименование</Наименование><Значение>Коврик Portable {w}x{h} см, вариант {i}</Значение></ЗначениеРеквизита>
\t\t\t\t</ЗначенияРеквизитов>
\t\t\t</Товар>
"""


def _guid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def write_catalogue(path: Path, products: int, seed: int = 2026) -> None:
    """Write the catalogue atomically (temp file, fsync, rename)."""
    rng = random.Random(seed)
    groups = [_guid(rng) for _ in range(GROUPS)]
    props = [_guid(rng) for _ in range(PROPS)]
    group_xml = "\n".join(
        f"\t\t\t<Группа><Ид>{g}</Ид><Наименование>Группа {k}</Наименование></Группа>"
        for k, g in enumerate(groups)
    )
    prop_xml = "\n".join(
        f"\t\t\t<Свойство><Ид>{p}</Ид><Наименование>Свойство {k}</Наименование>"
        "<ТипЗначений>Строка</ТипЗначений></Свойство>"
        for k, p in enumerate(props)
    )
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(b"\xef\xbb\xbf")
        f.write(_HEAD.format(groups=group_xml, props=prop_xml).encode())
        chunk: list[str] = []
        for i in range(products):
            values = "\n".join(
                f"\t\t\t\t\t<ЗначенияСвойства><Ид>{p}</Ид>"
                f"<Значение>{rng.randint(0, 9)},{rng.randint(0, 99)}</Значение></ЗначенияСвойства>"
                for p in props[:8]
            )
            chunk.append(
                _PRODUCT.format(
                    id=_guid(rng),
                    barcode=f"{4600000000000 + i}",
                    i=i,
                    w=rng.choice((120, 140, 180)),
                    h=rng.choice((180, 200)),
                    group=groups[i % GROUPS],
                    values=values,
                )
            )
            if len(chunk) == 2000:
                f.write("".join(chunk).encode())
                chunk.clear()
        f.write("".join(chunk).encode())
        f.write(_TAIL.encode())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def raw_iterparse(path: Path) -> int:
    """The floor: hardened iterparse of Товар, {local name: text} of its children, clearing."""
    n = 0
    local: dict[str, str] = {}
    with open(path, "rb") as f:
        for _event, elem in etree.iterparse(
            f, events=("end",), tag="{*}Товар", **ITERPARSE_OPTIONS
        ):
            rec: dict[str, Any] = {}
            for child in elem:
                tag = child.tag
                name = local.get(tag) or local.setdefault(tag, tag.rpartition("}")[2])
                rec[name] = child.text
            n += bool(rec)
            elem.clear(keep_tail=True)
            while elem.getprevious() is not None:
                del elem.getparent()[0]
    return n


def connector_read(path: Path) -> int:
    conn = CommerceMLConnector(
        CommerceMLConfig(path=str(path), document="import", settle_seconds=0, batch_size=2000)
    )
    try:
        return sum(len(b) for b in conn.read(str(path), None))
    finally:
        conn.close()


def _best(fn: Any, path: Path, repeat: int) -> tuple[int, float]:
    best = float("inf")
    n = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        n = fn(path)
        best = min(best, time.perf_counter() - t0)
    return n, best


def run(products: int = 200_000, repeat: int = 2) -> dict[str, Any]:
    """Write the catalogue once, then measure both readers; print and return the figures."""
    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"commerceml_import_{products}.xml"
    if not path.exists():
        write_catalogue(path, products)
    raw_n, raw_s = _best(raw_iterparse, path, repeat)
    conn_n, conn_s = _best(connector_read, path, repeat)
    if raw_n != products or conn_n != products:
        raise RuntimeError(f"expected {products} products, got raw={raw_n} connector={conn_n}")
    figures = {
        "products": products,
        "file_bytes": path.stat().st_size,
        "raw_iterparse_rps": round(raw_n / raw_s),
        "connector_rps": round(conn_n / conn_s),
        "ratio": round(raw_s / conn_s, 3),
        "goal": 0.3,
    }
    print(
        f"commerceml import.xml, {products:,} products, {figures['file_bytes'] / 1e6:.0f} MB\n"
        f"  raw hardened iterparse : {figures['raw_iterparse_rps']:>10,} records/s\n"
        f"  commerceml connector   : {figures['connector_rps']:>10,} records/s\n"
        f"  ratio                  : {figures['ratio']:.2f} (goal >= 0.3)"
    )
    return figures


if __name__ == "__main__":
    run()
