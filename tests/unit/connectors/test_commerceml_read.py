"""The CommerceML connector on generated documents: every trap of FORMATS.md section 1."""

# ruff: noqa: RUF001, E501 - Cyrillic XML test data: not homoglyph mistakes; one element per line

from __future__ import annotations

import gc
from decimal import Decimal
from pathlib import Path
from typing import Any

import psutil
import pytest
from pydantic import ValidationError

from connectors.base import Capability, RawBatch, SourceConnector
from connectors.commerceml import CommerceMLConfig, CommerceMLConnector
from junction.core.errors import (
    ConfigError,
    DTDForbiddenError,
    EncodingError,
    FieldTooLargeError,
    ParseError,
)
from mappings import compile_mapping

NS = ' xmlns="urn:1C.ru:commerceml_2" xmlns:xs="http://www.w3.org/2001/XMLSchema"'
BOM = b"\xef\xbb\xbf"

IMPORT = """<?xml version="1.0" encoding="UTF-8"?>
<КоммерческаяИнформация{ns} ВерсияСхемы="2.07" ДатаФормирования="2024-05-06T10:11:12">
  <Классификатор>
    <Ид>cls-1</Ид><Наименование>Классификатор</Наименование>
    <Владелец><Ид>own-1</Ид><Наименование>Cтройснаб</Наименование><ИНН>7700000000</ИНН></Владелец>
    <Группы>
      <Группа><Ид>g-shoes</Ид><Наименование>Обувь</Наименование>
        <Группы><Группа><Ид>g-boots</Ид><Наименование>Сапоги</Наименование></Группа></Группы>
      </Группа>
      <Группа><Ид>g-mats</Ид><Наименование>Коврики</Наименование></Группа>
    </Группы>
    <Свойства>
      <Свойство><Ид>p-weight</Ид><Наименование>Вес</Наименование><ТипЗначений>Число</ТипЗначений></Свойство>
      <Свойство><Ид>p-country</Ид><Наименование>Страна</Наименование>
        <ТипЗначений>Справочник</ТипЗначений>
        <ВариантыЗначений><Справочник><ИдЗначения>v-kr</ИдЗначения><Значение>КОРЕЯ</Значение></Справочник></ВариантыЗначений>
      </Свойство>
    </Свойства>
  </Классификатор>
  <Каталог СодержитТолькоИзменения="false">
    <Ид>cat-1</Ид><ИдКлассификатора>cls-1</ИдКлассификатора><Наименование>Каталог</Наименование>
    <Товары>
{products}
    </Товары>
  </Каталог>
</КоммерческаяИнформация>
"""

PRODUCT = """      <Товар>
        <Ид>prod-{i}</Ид><Штрихкод>460000000{i:04d}</Штрихкод><Артикул>SKU-{i}</Артикул>
        <Наименование>Сапоги женские №{i}</Наименование>
        <БазоваяЕдиница Код="796 " НаименованиеПолное="Штука" МеждународноеСокращение="PCE">
          <Пересчет><Единица>796</Единица><Коэффициент>1</Коэффициент></Пересчет>
        </БазоваяЕдиница>
        <Группы><Ид>g-boots</Ид></Группы>
        <Описание>Кожа &amp; мех</Описание>
        <Изготовитель><Ид>m-1</Ид><Наименование>Обувной комбинат</Наименование></Изготовитель>
        <ЗначенияСвойств>
          <ЗначенияСвойства><Ид>p-weight</Ид><Значение>1,4</Значение></ЗначенияСвойства>
          <ЗначенияСвойства><Ид>p-country</Ид><Значение>v-kr</Значение></ЗначенияСвойства>
        </ЗначенияСвойств>
        <СтавкиНалогов><СтавкаНалога><Наименование>НДС</Наименование><Ставка>20</Ставка></СтавкаНалога></СтавкиНалогов>
        <ЗначенияРеквизитов>
          <ЗначениеРеквизита><Наименование>Полное наименование</Наименование><Значение>Сапоги женские, полное №{i}</Значение></ЗначениеРеквизита>
        </ЗначенияРеквизитов>
      </Товар>"""

OFFERS = """<?xml version="1.0" encoding="UTF-8"?>
<КоммерческаяИнформация{ns} ВерсияСхемы="2.07" ДатаФормирования="2024-05-06T10:11:12">
  <Классификатор><Ид>cls-1</Ид><Наименование>Классификатор</Наименование></Классификатор>
  <ПакетПредложений СодержитТолькоИзменения="true">
    <Ид>cat-1#</Ид><Наименование>Пакет</Наименование><ИдКаталога>cat-1</ИдКаталога><ИдКлассификатора>cls-1</ИдКлассификатора>
    <ТипыЦен>
      <ТипЦены><Ид>pt-retail</Ид><Наименование>Розничная</Наименование><Валюта>RUB</Валюта>
        <Налог><Наименование>НДС</Наименование><УчтеноВСумме>true</УчтеноВСумме></Налог></ТипЦены>
      <ТипЦены><Ид>pt-whole</Ид><Наименование>Оптовая</Наименование><Валюта>руб</Валюта></ТипЦены>
    </ТипыЦен>
    <Склады><Склад><Ид>w-msk</Ид><Наименование>Москва</Наименование></Склад><Склад><Ид>w-nsk</Ид><Наименование>Новосибирск</Наименование></Склад></Склады>
    <Предложения>
      <Предложение>
        <Ид>prod-1#char-38</Ид><Артикул>SKU-1</Артикул><Наименование>Сапоги (38)</Наименование>
        <БазоваяЕдиница Код="715" НаименованиеПолное="Пара (2 шт.)"/>
        <ХарактеристикиТовара><ХарактеристикаТовара><Наименование>Размер</Наименование><Значение>38</Значение></ХарактеристикаТовара></ХарактеристикиТовара>
        <Цены>
          <Цена><Представление>\u00a01\u00a0719,50 RUB за пара</Представление><ИдТипаЦены>pt-retail</ИдТипаЦены><ЦенаЗаЕдиницу>1\u00a0719,50</ЦенаЗаЕдиницу><Валюта>RUB</Валюта><Коэффициент>1</Коэффициент></Цена>
          <Цена><ИдТипаЦены>pt-whole</ИдТипаЦены><ЦенаЗаЕдиницу>1500.25</ЦенаЗаЕдиницу></Цена>
        </Цены>
        <Склад ИдСклада="w-msk" КоличествоНаСкладе="2,5"/>
        <Склад ИдСклада="w-nsk" КоличествоНаСкладе="3"/>
      </Предложение>
      <Предложение>
        <Ид>prod-2</Ид><Наименование>Коврик</Наименование>
        <Цены><Цена><ИдТипаЦены>pt-whole</ИдТипаЦены><ЦенаЗаЕдиницу>99</ЦенаЗаЕдиницу></Цена></Цены>
        <Количество>7</Количество>
      </Предложение>
    </Предложения>
  </ПакетПредложений>
</КоммерческаяИнформация>
"""

PRICES_209 = """<?xml version="1.0" encoding="UTF-8"?>
<КоммерческаяИнформация{ns} ВерсияСхемы="2.09" ДатаФормирования="2024-05-06T10:11:12" Ид="">
  <ПакетПредложений СодержитТолькоИзменения="true">
    <Ид>cat-1#</Ид><ИдКаталога>cat-1</ИдКаталога>
    <Предложения>
      <Предложение><Ид>prod-1</Ид><Цены><Цена><Представление>181 RUB за шт</Представление><ИдТипаЦены>pt-x</ИдТипаЦены><ЦенаЗаЕдиницу>181,9</ЦенаЗаЕдиницу><Валюта>RUB</Валюта></Цена></Цены></Предложение>
    </Предложения>
  </ПакетПредложений>
</КоммерческаяИнформация>
"""

RESTS_209 = """<?xml version="1.0" encoding="UTF-8"?>
<КоммерческаяИнформация{ns} ВерсияСхемы="2.09" ДатаФормирования="2024-05-06T10:11:13">
  <ПакетПредложений СодержитТолькоИзменения="true">
    <Ид>cat-1#</Ид><ИдКаталога>cat-1</ИдКаталога>
    <Предложения>
      <Предложение><Ид>prod-1</Ид><Остатки><Остаток><Склад><Ид>w-1</Ид><Количество>4</Количество></Склад></Остаток>
        <Остаток><Склад><Ид>w-2</Ид><Количество>0,5</Количество></Склад></Остаток></Остатки></Предложение>
      <Предложение><Ид>prod-2#char-1</Ид><Остатки><Остаток><Количество>12</Количество></Остаток></Остатки></Предложение>
    </Предложения>
  </ПакетПредложений>
</КоммерческаяИнформация>
"""

ORDERS = """<?xml version="1.0" encoding="windows-1251"?>
<КоммерческаяИнформация ВерсияСхемы="2.05" ДатаФормирования="2021-02-12T17:03:19" ФорматСуммы="ЧЦ=18; ЧДЦ=2; ЧРД=.">
  <Документ>
    <Ид>132</Ид><Номер>132</Номер><Дата>2021-02-11</Дата><ХозОперация>Заказ товара</ХозОперация>
    <Роль>Продавец</Роль><Валюта>руб</Валюта><Курс>1</Курс><Сумма>1 231,74</Сумма>
    <Контрагенты>
      <Контрагент><Ид>38#ivan#Иван Петров</Ид><Наименование>Иван Петров</Наименование><Роль>Покупатель</Роль>
        <Фамилия>Петров</Фамилия><Имя>Иван</Имя>
        <АдресРегистрации><Представление>Москва, Тверская 1</Представление></АдресРегистрации>
        <Контакты><Контакт><Тип>Почта</Тип><Значение>Ivan@Example.RU</Значение></Контакт></Контакты>
      </Контрагент>
    </Контрагенты>
    <Время>18:45:21</Время>
    <Товары>
      <Товар><Ид>ORDER_DELIVERY</Ид><Наименование>Доставка заказа</Наименование>
        <БазоваяЕдиница Код="796" НаименованиеПолное="Штука" МеждународноеСокращение="PCE">шт</БазоваяЕдиница>
        <ЦенаЗаЕдиницу>300</ЦенаЗаЕдиницу><Количество>1</Количество><Сумма>300</Сумма>
        <ЗначенияРеквизитов><ЗначениеРеквизита><Наименование>ВидНоменклатуры</Наименование><Значение>Услуга</Значение></ЗначениеРеквизита></ЗначенияРеквизитов>
      </Товар>
      <Товар><Ид>prod-1#char-38</Ид><ИдКаталога>cat-1</ИдКаталога><Артикул>SKU-1</Артикул><Наименование>Сапоги (38)</Наименование>
        <БазоваяЕдиница Код="715">пар</БазоваяЕдиница>
        <ЦенаЗаЕдиницу>465,87</ЦенаЗаЕдиницу><Количество>2,0000</Количество><Сумма>931,74</Сумма>
      </Товар>
    </Товары>
    <ЗначенияРеквизитов>
      <ЗначениеРеквизита><Наименование>Статус заказа</Наименование><Значение>[N] Принят, ожидается оплата</Значение></ЗначениеРеквизита>
      <ЗначениеРеквизита><Наименование>Заказ оплачен</Наименование><Значение>false</Значение></ЗначениеРеквизита>
    </ЗначенияРеквизитов>
  </Документ>
  <Документ><Ид>133</Ид><Номер>133</Номер><Дата>2021-02-12</Дата><Валюта>RUB</Валюта><Сумма>10</Сумма>
    <Контрагенты><Контрагент><Ид>c-1</Ид><Наименование>ООО «Ромашка»</Наименование><Роль>Плательщик</Роль></Контрагент>
      <Контрагент Роль="Покупатель"><Ид>c-2</Ид><Наименование>Анна</Наименование></Контрагент></Контрагенты>
    <Товары><Товар><Ид>prod-2</Ид><Наименование>Коврик</Наименование><ЦенаЗаЕдиницу>10</ЦенаЗаЕдиницу><Количество>1</Количество><Сумма>10</Сумма></Товар></Товары>
  </Документ>
</КоммерческаяИнформация>
"""

EMPTY_ORDERS = """<?xml version="1.0" encoding="windows-1251"?>
<КоммерческаяИнформация ВерсияСхемы="2.05" ДатаФормирования="2021-02-12T17:04:36">
</КоммерческаяИнформация>
"""


def import_doc(n: int = 3, ns: str = NS) -> str:
    return IMPORT.format(ns=ns, products="\n".join(PRODUCT.format(i=i) for i in range(1, n + 1)))


def drop(tmp_path: Path, name: str, data: bytes) -> str:
    inbox = tmp_path / "inbox"
    inbox.mkdir(exist_ok=True)
    (inbox / name).write_bytes(data)
    return str(inbox / name)


def connector(tmp_path: Path, **kw: Any) -> CommerceMLConnector:
    kw.setdefault("path", str(tmp_path / "inbox"))
    kw.setdefault("settle_seconds", 0)
    return CommerceMLConnector(CommerceMLConfig(**kw))


def records(batches: list[RawBatch]) -> list[dict[str, Any]]:
    return [r for b in batches for r in b.records]


def test_class_contract() -> None:
    assert CommerceMLConnector.name == "commerceml"
    assert CommerceMLConnector.config_model is CommerceMLConfig
    assert CommerceMLConnector.capabilities == {Capability.FILES, Capability.DISCOVER}
    assert isinstance(CommerceMLConnector(CommerceMLConfig(path="/x")), SourceConnector)
    with pytest.raises(ValidationError):
        CommerceMLConfig(path="/x", document="prices")  # type: ignore[arg-type]
    schema = CommerceMLConfig.model_json_schema()
    assert all(p.get("description") for p in schema["properties"].values())
    cfg = CommerceMLConfig(path="/x", exchange={"username": "обмен", "password": "пароль"})
    assert cfg.exchange is not None
    assert "пароль" not in repr(cfg)


@pytest.mark.parametrize("prefix", [b"", BOM], ids=["utf-8", "utf-8-bom"])
@pytest.mark.parametrize("ns", [NS, ""], ids=["ns", "no-ns"])
def test_import_products_flattened(tmp_path: Path, prefix: bytes, ns: str) -> None:
    path = drop(tmp_path, "import.xml", prefix + import_doc(3, ns).encode("utf-8"))
    conn = connector(tmp_path, document="import", batch_size=2)
    batches = list(conn.read(path, None))
    assert [len(b) for b in batches] == [2, 1]
    prov = batches[0].provenance
    assert prov["document"] == "import"
    assert prov["connector"] == "commerceml"
    assert prov["encoding"] == ("utf-8-sig" if prefix else "utf-8")
    assert prov["schema_version"] == "2.07"
    sha = prov["sha256"]
    assert [k for b in batches for k in b.keys] == [f"{sha[:16]}:{i}" for i in (1, 2, 3)]
    assert batches[-1].cursor == {"sha256": sha, "row": 3}
    first = records(batches)[0]
    assert first["id"] == "prod-1"
    assert first["sku"] == "SKU-1"
    assert first["barcode"] == "4600000000001"
    assert first["name"] == "Сапоги женские №1"
    assert first["description"] == "Кожа & мех"
    assert first["unit_code"] == "796"  # the trailing space of Код="796 " is gone
    assert first["unit_intl"] == "PCE"
    assert first["group_id"] == "g-boots"
    assert first["group_name"] == "Сапоги"
    assert first["group_path"] == "Обувь / Сапоги"
    assert first["manufacturer"] == "Обувной комбинат"
    # property values: names from the classifier, Справочник ids resolved, decimal commas raw
    assert first["properties"] == {"Вес": "1,4", "Страна": "КОРЕЯ"}
    assert first["tax_rates"] == {"НДС": "20"}
    assert first["requisites"]["Полное наименование"] == "Сапоги женские, полное №1"
    assert first["catalog_id"] == "cat-1"
    assert first["classifier_id"] == "cls-1"
    assert first["only_changes"] == "false"
    assert first["generated_at"] == "2024-05-06T10:11:12"


def test_import_maps_to_products(tmp_path: Path) -> None:
    path = drop(tmp_path, "import.xml", BOM + import_doc(2).encode("utf-8"))
    recs = records(list(connector(tmp_path).read(path, None)))
    mapping = compile_mapping("commerceml.import")
    good, bad = mapping.apply_batch(recs)
    assert bad == []
    product = good[0][1].model_dump(mode="json")
    assert product["external_id"] == "prod-1"
    assert product["sku"] == "SKU-1"
    assert product["unit"] == "PCE"
    assert product["category"] == "Сапоги"
    assert mapping.key_of(recs[1]) == "prod-2"


def test_deletion_marks(tmp_path: Path) -> None:
    doc = import_doc(0).replace(
        "<Товары>\n",
        '<Товары><Товар Статус="Удален"><Ид>a</Ид><Наименование>A</Наименование></Товар>'
        "<Товар><Ид>b</Ид><Наименование>B</Наименование><ПометкаУдаления>true</ПометкаУдаления></Товар>"
        "<Товар><Ид>c</Ид><Наименование>C</Наименование><ПометкаУдаления>false</ПометкаУдаления></Товар>",
    )
    path = drop(tmp_path, "import.xml", doc.encode())
    recs = records(list(connector(tmp_path).read(path, None)))
    assert [r.get("deleted") for r in recs] == [True, True, False]
    good, _bad = compile_mapping("commerceml.import").apply_batch(recs)
    assert [m.deleted for _i, m in good] == [True, True, False]  # type: ignore[attr-defined]


def test_offers_prices_warehouses_and_decimal_commas(tmp_path: Path) -> None:
    path = drop(tmp_path, "offers.xml", BOM + OFFERS.format(ns=NS).encode("utf-8"))
    batches = list(connector(tmp_path).read(path, None))
    assert batches[0].provenance["document"] == "offers"
    one, two = records(batches)
    assert one["id"] == "prod-1#char-38"
    assert one["product_id"] == "prod-1"
    assert one["characteristic_id"] == "char-38"
    assert one["characteristics"] == {"Размер": "38"}
    assert one["prices"][0] == {
        "presentation": "1\u00a0719,50 RUB за пара",  # display text stays raw
        "type_id": "pt-retail",
        "value": "1719.50",
        "currency": "RUB",
        "coefficient": "1",
        "type_name": "Розничная",
        "tax_included": "true",
    }
    # the second price type has no Валюта: its price type's currency applies
    assert one["prices"][1]["currency"] == "руб"
    assert one["prices"][1]["type_name"] == "Оптовая"
    assert (one["price"], one["currency"], one["price_type"]) == ("1719.50", "RUB", "Розничная")
    assert one["stocks"] == [
        {"warehouse_id": "w-msk", "warehouse_name": "Москва", "quantity": "2.5"},
        {"warehouse_id": "w-nsk", "warehouse_name": "Новосибирск", "quantity": "3"},
    ]
    assert one["stock"] == "5.5"
    assert one["package_id"] == "cat-1#"
    assert one["only_changes"] == "true"
    assert two["stock"] == "7"
    assert two["currency"] == "руб"
    good, bad = compile_mapping("commerceml.offers").apply_batch([one, two])
    assert bad == []
    p1, p2 = (m.model_dump(mode="json") for _i, m in good)
    assert (p1["price"], p1["currency"], p1["stock"]) == ("1719.50", "RUB", "5.5")
    assert (p2["price"], p2["currency"], p2["stock"]) == ("99", "RUB", "7")


def test_decimal_comma_off_leaves_numbers_raw(tmp_path: Path) -> None:
    path = drop(tmp_path, "offers.xml", OFFERS.format(ns="").encode("utf-8"))
    one = records(list(connector(tmp_path, decimal_comma=False).read(path, None)))[0]
    assert one["price"] == "1\u00a0719,50"
    assert "stock" not in one  # "2,5" is not a number without decimal_comma
    _good, bad = compile_mapping("commerceml.offers").apply_batch([one])
    assert [e.field for _i, e in bad] == ["price"]


def test_split_prices_and_rests_of_209(tmp_path: Path) -> None:
    prices = drop(tmp_path, "prices___1.xml", BOM + PRICES_209.format(ns=NS).encode())
    rests = drop(tmp_path, "rests___1.xml", BOM + RESTS_209.format(ns=NS).encode())
    conn = connector(tmp_path, document="offers")
    [p] = records(list(conn.read(prices, None)))
    assert (p["id"], p["price"], p["currency"]) == ("prod-1", "181.9", "RUB")
    r1, r2 = records(list(conn.read(rests, None)))
    assert r1["stocks"] == [
        {"warehouse_id": "w-1", "quantity": "4"},
        {"warehouse_id": "w-2", "quantity": "0.5"},
    ]
    assert r1["stock"] == "4.5"
    assert (r2["characteristic_id"], r2["stock"]) == ("char-1", "12")
    good, bad = compile_mapping("commerceml.offers").apply_batch([p, r1, r2])
    assert bad == []
    assert [(m.name, m.price, m.stock) for _i, m in good] == [  # type: ignore[attr-defined]
        ("prod-1", Decimal("181.9"), None),
        ("prod-1", None, Decimal("4.5")),
        ("prod-2#char-1", None, Decimal("12")),
    ]


def test_orders_cp1251_without_namespace(tmp_path: Path) -> None:
    path = drop(tmp_path, "orders.xml", ORDERS.encode("cp1251"))
    batches = list(connector(tmp_path).read(path, None))
    assert batches[0].provenance["document"] == "orders"
    assert batches[0].provenance["encoding"] == "cp1251"
    first, second = records(batches)
    assert first["total"] == "1231.74"
    assert first["currency"] == "руб"
    assert first["buyer"]["id"] == "38#ivan#Иван Петров"
    assert first["buyer"]["address"] == "Москва, Тверская 1"
    assert first["buyer"]["contacts"] == [{"type": "Почта", "value": "Ivan@Example.RU"}]
    delivery, boots = first["lines"]
    assert (delivery["line_no"], delivery["id"], delivery["kind"]) == (
        1,
        "ORDER_DELIVERY",
        "Услуга",
    )
    assert (boots["product_id"], boots["characteristic_id"]) == ("prod-1", "char-38")
    assert (boots["price"], boots["quantity"], boots["amount"]) == ("465.87", "2.0000", "931.74")
    assert first["requisites"]["Статус заказа"] == "[N] Принят, ожидается оплата"
    assert (
        second["buyer"]["id"] == "c-2"
    )  # the role may be an attribute; the payer is not the buyer
    good, bad = compile_mapping("commerceml.orders").apply_batch([first, second])
    assert bad == []
    order = good[0][1].model_dump(mode="json")
    assert order["ordered_at"] == "2021-02-11T18:45:21Z"
    assert order["account_external_id"] == "38#ivan#Иван Петров"
    assert order["customer_name"] == "Иван Петров"
    assert order["customer_email"] == "ivan@example.ru"
    assert (order["currency"], order["total"]) == ("RUB", "1231.74")
    assert order["status"] == "[N] Принят, ожидается оплата"
    assert [
        (ln["line_no"], ln["product_external_id"], ln["quantity"], ln["unit"])
        for ln in order["lines"]
    ] == [
        (1, "ORDER_DELIVERY", "1", "PCE"),
        (2, "prod-1#char-38", "2.0000", "пар"),
    ]
    assert good[1][1].model_dump(mode="json")["account_external_id"] == "c-2"


def test_empty_orders_answer_yields_nothing(tmp_path: Path) -> None:
    path = drop(tmp_path, "orders.xml", EMPTY_ORDERS.encode("cp1251"))
    assert list(connector(tmp_path, document="orders").read(path, None)) == []
    empty = drop(tmp_path, "zero.xml", b"")
    assert list(connector(tmp_path).read(empty, None)) == []


def test_wrong_kind_is_refused_and_not_discovered(tmp_path: Path) -> None:
    imp = drop(tmp_path, "import.xml", BOM + import_doc(1).encode())
    off = drop(tmp_path, "offers.xml", OFFERS.format(ns=NS).encode())
    orders = drop(tmp_path, "orders.xml", ORDERS.encode("cp1251"))
    conn = connector(tmp_path, document="import")
    assert [s.name for s in conn.discover()] == [imp]
    with pytest.raises(ConfigError) as info:
        conn.read(off, None)
    assert info.value.context["document"] == "offers"
    assert [s.name for s in connector(tmp_path, document="orders").discover()] == [orders]
    assert len(connector(tmp_path).discover()) == 3


def test_resume_after_cursor_and_replaced_file(tmp_path: Path) -> None:
    path = drop(tmp_path, "import.xml", import_doc(5).encode())
    conn = connector(tmp_path, batch_size=2)
    first = list(conn.read(path, None))
    resumed = list(conn.read(path, first[0].cursor))
    assert [k for b in resumed for k in b.keys] == [k for b in first[1:] for k in b.keys]
    assert records(resumed)[0]["id"] == "prod-3"
    assert records(resumed)[0]["group_name"] == "Сапоги"  # the classifier is read when skipping
    assert list(conn.read(path, first[-1].cursor)) == []
    drop(tmp_path, "import.xml", import_doc(6).encode())  # replaced: a new sha256 starts over
    again = list(conn.read(path, first[-1].cursor))
    assert len(records(again)) == 6


def test_bad_cp1251_byte_fails_the_file_before_any_record(tmp_path: Path) -> None:
    data = ORDERS.encode("cp1251").replace(
        "Коврик".encode("cp1251"), b"\x98"
    )  # undefined in cp1251
    path = drop(tmp_path, "orders.xml", data)
    with pytest.raises(EncodingError) as info:
        connector(tmp_path).read(path, None)
    assert info.value.context["file"] == path
    assert info.value.context["encoding"] == "cp1251"


def test_dtd_refused(tmp_path: Path) -> None:
    xxe = (
        '<?xml version="1.0"?>\n<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'
        "<КоммерческаяИнформация><Каталог><Товары><Товар><Ид>&x;</Ид></Товар></Товары>"
        "</Каталог></КоммерческаяИнформация>"
    )
    path = drop(tmp_path, "import.xml", xxe.encode())
    with pytest.raises(DTDForbiddenError):
        list(connector(tmp_path).read(path, None))


def test_broken_document_is_a_parse_error(tmp_path: Path) -> None:
    path = drop(tmp_path, "import.xml", import_doc(3).encode()[:-200])
    conn = connector(tmp_path, batch_size=1)
    with pytest.raises(ParseError) as info:
        list(conn.read(path, None))
    assert info.value.context["file"] == path


def test_oversized_value_is_a_row_error(tmp_path: Path) -> None:
    doc = import_doc(3).replace("Кожа &amp; мех", "x" * 5000, 1)
    path = drop(tmp_path, "import.xml", doc.encode())
    batches = list(connector(tmp_path, max_field_bytes=1024).read(path, None))
    [err] = [e for b in batches for e in b.errors]
    assert err.position == 1
    assert isinstance(err.error, FieldTooLargeError)
    assert err.error.context["field"] == "Описание"
    assert [r["id"] for r in records(batches)] == ["prod-2", "prod-3"]
    assert [p for b in batches for p in b.positions] == [2, 3]


def test_only_root_children_decide_the_kind_and_lines_are_not_records(tmp_path: Path) -> None:
    # order lines are Товар elements too: an orders file read as auto gives orders, not products
    path = drop(tmp_path, "orders.xml", ORDERS.encode("cp1251"))
    recs = records(list(connector(tmp_path, document="auto").read(path, None)))
    assert [r["id"] for r in recs] == ["132", "133"]


def test_a_large_catalogue_streams_in_constant_memory(tmp_path: Path) -> None:
    # ~30 MB of products: kept as an lxml tree they would take several times the limit below
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    path = inbox / "import.xml"
    head, tail = import_doc(0).split("<Товары>")
    product = "".join(PRODUCT.format(i=i) for i in range(100)).encode()
    with path.open("wb") as f:
        f.write(BOM + (head + "<Товары>").encode())
        for _ in range(200):
            f.write(product)
        f.write(tail.encode())
    assert path.stat().st_size > 25 * 1024 * 1024
    conn = connector(tmp_path, batch_size=5000)
    proc = psutil.Process()
    gc.collect()
    baseline = proc.memory_info().rss
    peak = baseline
    count = 0
    for batch in conn.read(str(path), None):
        count += len(batch.records)
        peak = max(peak, proc.memory_info().rss)
    assert count == 20_000
    assert batch.records[-1]["group_path"] == "Обувь / Сапоги"
    assert peak - baseline < 40 * 1024 * 1024


def test_210_containers_and_offer_deltas(tmp_path: Path) -> None:
    # 2.08+: orders wrapped in Контейнер, price/stock deltas as ИзмененияПакетаПредложений
    orders = ORDERS.replace("<Документ>", "<Контейнер><Документ>").replace(
        "</Документ>", "</Документ></Контейнер>"
    )
    path = drop(tmp_path, "orders.xml", orders.encode("cp1251"))
    assert [r["id"] for r in records(list(connector(tmp_path).read(path, None)))] == ["132", "133"]
    delta = PRICES_209.format(ns=NS).replace("ПакетПредложений", "ИзмененияПакетаПредложений")
    path = drop(tmp_path, "offers.xml", delta.encode())
    batches = list(connector(tmp_path, document="offers").read(path, None))
    [offer] = records(batches)
    assert (offer["id"], offer["price"], offer["catalog_id"]) == ("prod-1", "181.9", "cat-1")
    assert batches[0].provenance["document"] == "offers"
