"""Streaming CommerceML 2.x reader: the hardened lxml ``iterparse`` of ``connectors.safe_xml``.

One pass over the file.  The small reference sections that precede the records (the
classifier's groups and properties, the price types, the warehouses) are parsed into lookup
tables when their element ends; each record element (``Товар`` of a catalogue, ``Предложение``
of an offers package, ``Документ`` of an orders file) is flattened into a dict when it ends,
then cleared together with every fully parsed node before it, so memory stays flat however
large the file is.  lxml is imported only here (the plugin's vendor-SDK module).
"""

# ruff: noqa: RUF001 - the CommerceML element names are Cyrillic, not homoglyph mistakes

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import IO, Any, Final

from lxml import etree

from connectors.safe_xml import (
    RecordProblem,
    ValueTooLarge,
    forbid_doctype,
    hardened_iterparse,
    release_parsed,
    translate_syntax_error,
)
from junction.core.errors import FieldTooLargeError

# the record element of each document kind, and the element that holds the records' header
RECORD_TAG: Final[dict[str, str]] = {
    "import": "Товар",
    "offers": "Предложение",
    "orders": "Документ",
}
# 2.08+ sends price/stock deltas as ИзмененияПакетаПредложений and wraps orders in Контейнер
_CONTAINER: Final[dict[str, tuple[str, ...]]] = {
    "import": ("Каталог",),
    "offers": ("ПакетПредложений", "ИзмененияПакетаПредложений"),
}
_DETECT: Final[dict[str, str]] = {
    "Каталог": "import",
    "ПакетПредложений": "offers",
    "ИзмененияПакетаПредложений": "offers",
    "Документ": "orders",
    "Контейнер": "orders",
    "Классификатор": "import",
}
# context sections parsed into lookup tables, per document kind
_SECTIONS: Final[dict[str, tuple[str, ...]]] = {
    "import": ("Классификатор",),
    "offers": ("Классификатор", "ТипыЦен", "Склады"),
    "orders": (),
}
_GROUPING = str.maketrans("", "", " \u00a0\u202f")
_XSD_DECIMAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)", re.ASCII).fullmatch
_UNIT_ATTRS = (("НаименованиеПолное", "unit_name"), ("МеждународноеСокращение", "unit_intl"))
_FIRST_PRICE = (("value", "price"), ("currency", "currency"), ("type_name", "price_type"))
_NO_REFS: dict[str, str] = {}
_DELETED_STATUS = frozenset({"удален", "удалён", "deleted"})


class _LocalNames(dict[Any, str]):
    """``{namespace}name`` -> ``name``, memoized; "" for a non-element node's tag."""

    def __missing__(self, tag: Any) -> str:
        name = tag.rpartition("}")[2] if type(tag) is str else ""
        self[tag] = name
        return name


# one C-level dict lookup per child (the parser drops comments and processing instructions)
_NAMES = _LocalNames()


def _local(tag: str) -> str:
    return _NAMES[tag]


def _text(elem: Any) -> str:
    text = elem.text
    return text.strip() if text else ""


def _child_text(elem: Any, name: str) -> str | None:
    for c in elem:
        n = _NAMES[c.tag]
        if n == name:
            return _text(c)
    return None


@dataclass(frozen=True, slots=True)
class Detected:
    """What the head of a file says: its document kind and the root's attributes."""

    kind: str | None
    schema_version: str | None = None
    generated_at: str | None = None


def detect_kind(fileobj: IO[bytes], encoding: str | None) -> Detected:
    """Tell a file's document kind from the first decisive child of its root.

    ``Каталог`` means a catalogue (import), ``ПакетПредложений`` an offers package (offers,
    prices and rests files alike), ``Документ`` an orders file; a file holding only a
    ``Классификатор`` is an import.  The kind is None when the root has none of these (an
    empty orders answer).

    Raises:
        DTDForbiddenError, UnsafeXMLError, EncodingError, ParseError: as ``iterparse`` finds them.
    """
    context = hardened_iterparse(
        fileobj, events=("start",), tag=[f"{{*}}{t}" for t in _DETECT], encoding=encoding
    )
    found: str | None = None
    root: Any = None
    try:
        for _event, elem in context:
            tree = elem.getroottree()
            forbid_doctype(tree)
            root = tree.getroot()
            parent = elem.getparent()
            if parent is None or parent.getparent() is not None:
                continue  # only children of the root decide
            name = _local(elem.tag)
            found = _DETECT[name]
            if name != "Классификатор":
                break
        else:
            if context.root is not None:
                forbid_doctype(context.root.getroottree())
                root = context.root
    except etree.XMLSyntaxError as exc:
        raise translate_syntax_error(exc, context.error_log) from None
    if root is None:
        return Detected(found)
    return Detected(found, root.get("ВерсияСхемы"), root.get("ДатаФормирования"))


@dataclass
class _Context:
    """What the sections before the records say (lookup tables and the package header)."""

    header: dict[str, Any] = field(default_factory=dict)
    header_done: bool = False
    groups: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # id -> name, parent
    properties: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)
    price_types: dict[str, dict[str, str]] = field(default_factory=dict)
    warehouses: dict[str, str] = field(default_factory=dict)


class DocumentReader:
    """Flattens the records of one CommerceML document; see the package README for the keys."""

    def __init__(self, kind: str, *, max_field_bytes: int | None, decimal_comma: bool) -> None:
        self.kind = kind
        self.ctx = _Context()
        self._limit = max_field_bytes
        self._quick = max_field_bytes // 4 if max_field_bytes is not None else -1
        self._decimal_comma = decimal_comma

    # -- values -------------------------------------------------------------------------------

    def _t(self, elem: Any, name: str) -> str:
        """The stripped text of ``elem``, size-checked (``name`` names it in the error)."""
        text = elem.text
        if not text:
            return ""
        value: str = text.strip()
        if 0 <= self._quick < len(value):
            self._check(name, value)
        return value

    def _check(self, name: str, value: str) -> None:
        if self._limit is not None and len(value) > self._quick:
            size = len(value.encode("utf-8"))
            if size > self._limit:
                raise ValueTooLarge(name, size)

    def _num(self, value: str) -> str:
        """A numeric element's text in the xs:decimal form when ``decimal_comma`` allows."""
        if not self._decimal_comma or not value or _XSD_DECIMAL(value):
            return value
        s = value.translate(_GROUPING)
        if s.count(",") == 1 and "." not in s:
            s = s.replace(",", ".")
        return s if _XSD_DECIMAL(s) else value

    # -- sections -----------------------------------------------------------------------------

    def section(self, name: str, elem: Any) -> None:
        """Read a reference section (classifier, price types, warehouses) into the tables."""
        self._capture_header(elem)
        if name == "Классификатор":
            self.ctx.header.setdefault("classifier_id", _child_text(elem, "Ид") or None)
            for c in elem:
                n = _NAMES[c.tag]
                if n == "Группы":
                    self._groups(c, None)
                elif n == "Свойства":
                    self._properties(c)
        elif name == "ТипыЦен":
            for t in elem:
                info: dict[str, str] = {}
                for c in t:
                    n = _NAMES[c.tag]
                    if n == "Ид":
                        info["id"] = _text(c)
                    elif n == "Наименование":
                        info["name"] = _text(c)
                    elif n == "Валюта":
                        info["currency"] = _text(c)
                    elif n == "Налог":
                        included = _child_text(c, "УчтеноВСумме")
                        if included is not None:
                            info["tax_included"] = included
                if "id" in info:
                    self.ctx.price_types[info["id"]] = info
        elif name == "Склады":
            for w in elem:
                wid = _child_text(w, "Ид")
                if wid:
                    self.ctx.warehouses[wid] = _child_text(w, "Наименование") or ""

    def _groups(self, groups: Any, parent: str | None) -> None:
        for g in groups:
            gid = _child_text(g, "Ид")
            if not gid:
                continue
            self.ctx.groups[gid] = (_child_text(g, "Наименование") or "", parent)
            for c in g:
                n = _NAMES[c.tag]
                if n == "Группы":
                    self._groups(c, gid)

    def _properties(self, props: Any) -> None:
        for p in props:
            pid, name, values = None, "", {}
            for c in p:
                n = _NAMES[c.tag]
                if n == "Ид":
                    pid = _text(c)
                elif n == "Наименование":
                    name = _text(c)
                elif n == "ВариантыЗначений":
                    for ref in c:
                        vid, val = _child_text(ref, "ИдЗначения"), _child_text(ref, "Значение")
                        if vid:
                            values[vid] = val or ""
            if pid:
                self.ctx.properties[pid] = (name or pid, values)

    def _capture_header(self, elem: Any) -> None:
        """Read the root's attributes and the container's leading children, once."""
        ctx = self.ctx
        if ctx.header_done:
            return
        root = elem.getroottree().getroot()
        ctx.header["schema_version"] = root.get("ВерсияСхемы")
        ctx.header["generated_at"] = root.get("ДатаФормирования")
        containers = _CONTAINER.get(self.kind, ())
        node = elem.getparent()
        while node is not None and containers:
            if _local(node.tag) in containers:
                break
            node = node.getparent()
        else:
            return  # the container has not started yet (a classifier before the catalogue)
        ctx.header_done = True
        ctx.header["only_changes"] = node.get("СодержитТолькоИзменения")
        for c in node:
            n = _NAMES[c.tag]
            if n == "Ид":
                ctx.header["package_id" if self.kind == "offers" else "catalog_id"] = _text(c)
            elif n == "ИдКаталога":
                ctx.header["catalog_id"] = _text(c)
            elif n == "ИдКлассификатора":
                ctx.header["classifier_id"] = _text(c)

    # -- records ------------------------------------------------------------------------------

    def record(self, elem: Any) -> dict[str, Any]:
        """Flatten one record element (raises ``ValueTooLarge``)."""
        self._capture_header(elem)
        if self.kind == "orders":
            return self._order(elem)
        out = self._item(elem)
        for key in ("generated_at", "only_changes", "catalog_id", "classifier_id", "package_id"):
            value = self.ctx.header.get(key)
            if value is not None:
                out[key] = value
        return out

    def _item(self, elem: Any) -> dict[str, Any]:
        """A ``Товар`` or ``Предложение`` (catalogue, offers, or an order line)."""
        out: dict[str, Any] = {}
        status = elem.get("Статус")
        if status:
            out["status"] = status
            if status.strip().lower() in _DELETED_STATUS:
                out["deleted"] = True
        t = self._t
        for c in elem:
            n = _NAMES[c.tag]
            if n == "Ид":
                item_id = out["id"] = t(c, n)
                product, _sep, variant = item_id.partition("#")
                out["product_id"] = product
                if variant:
                    out["characteristic_id"] = variant
            elif n == "Артикул":
                out["sku"] = t(c, n)
            elif n == "Наименование":
                out["name"] = t(c, n)
            elif n == "Штрихкод":
                code = t(c, n)
                if code:
                    out.setdefault("barcode", code)
                    out.setdefault("barcodes", []).append(code)
            elif n == "Код":
                out["code"] = t(c, n)
            elif n == "Описание":
                out["description"] = t(c, n)
            elif n == "БазоваяЕдиница":
                self._unit(c, out)
            elif n == "Группы":
                ids = [t(g, n) for g in c]
                if ids:
                    out["group_ids"] = ids
                    out["group_id"] = ids[0]
                    self._group_names(ids[0], out)
            elif n == "Картинка":
                pic = t(c, n)
                if pic:
                    out.setdefault("images", []).append(pic)
            elif n == "Изготовитель":
                out["manufacturer_id"] = _child_text(c, "Ид") or ""
                out["manufacturer"] = _child_text(c, "Наименование") or ""
            elif n == "ЗначенияСвойств":
                out["properties"] = self._property_values(c)
            elif n == "ЗначенияРеквизитов":
                out["requisites"] = self._requisites(c)
            elif n == "СтавкиНалогов":
                out["tax_rates"] = {
                    _child_text(r, "Наименование") or "": self._num(_child_text(r, "Ставка") or "")
                    for r in c
                }
            elif n == "ХарактеристикиТовара":
                out["characteristics"] = {
                    _child_text(h, "Наименование") or "": _child_text(h, "Значение") or ""
                    for h in c
                }
            elif n == "ПометкаУдаления":
                out["deleted"] = t(c, n).lower() == "true"
            elif n == "Цены":
                self._prices(c, out)
            elif n == "Количество":
                out["quantity"] = self._num(t(c, n))
            elif n == "Склад":
                wid = c.get("ИдСклада") or ""
                self._stock(out, wid, self._num((c.get("КоличествоНаСкладе") or "").strip()))
            elif n == "Остатки":
                for rest in c:
                    for part in rest:
                        m = _NAMES[part.tag]
                        if m == "Склад":
                            qty = self._num(_child_text(part, "Количество") or "")
                            self._stock(out, _child_text(part, "Ид") or "", qty)
                        elif m == "Количество":
                            out["quantity"] = self._num(t(part, m))
            elif n == "ЦенаЗаЕдиницу":
                out["price"] = self._num(t(c, n))
            elif n == "Сумма":
                out["amount"] = self._num(t(c, n))
            elif n == "ИдКаталога":
                out["catalog_id"] = t(c, n)
            elif n == "Коэффициент":
                out["coefficient"] = self._num(t(c, n))
        if self.kind == "offers":
            self._total_stock(out)
        return out

    def _unit(self, c: Any, out: dict[str, Any]) -> None:
        code = c.get("Код")
        if code is not None:
            out["unit_code"] = code.strip()
        for attr, key in _UNIT_ATTRS:
            value = c.get(attr)
            if value:
                out[key] = value.strip()
        text = self._t(c, "БазоваяЕдиница")
        if text:
            out["unit"] = text

    def _group_names(self, gid: str, out: dict[str, Any]) -> None:
        groups = self.ctx.groups
        info = groups.get(gid)
        if info is None:
            return
        out["group_name"] = info[0]
        path = [info[0]]
        parent = info[1]
        while parent is not None and len(path) < 64:
            up = groups.get(parent)
            if up is None:
                break
            path.append(up[0])
            parent = up[1]
        out["group_path"] = " / ".join(reversed(path))

    def _property_values(self, c: Any) -> dict[str, Any]:
        # hot path (a dozen values per product): locals only, size checks only for long text
        props, names, quick = self.ctx.properties, _NAMES, self._quick
        out: dict[str, Any] = {}
        for pv in c:
            pid, values = "", []
            for part in pv:
                m = names[part.tag]
                text = part.text
                value = text.strip() if text else ""
                if m == "Ид":
                    pid = value
                elif m == "Значение":
                    if 0 <= quick < len(value):
                        self._check(m, value)
                    values.append(value)
            name, refs = props.get(pid, (pid, _NO_REFS))
            if refs:
                values = [refs.get(v, v) for v in values]
            if name and values:
                out.setdefault(name, values[0] if len(values) == 1 else values)
        return out

    def _requisites(self, c: Any) -> dict[str, str]:
        names, quick = _NAMES, self._quick
        out: dict[str, str] = {}
        for r in c:
            name, value = "", ""
            for part in r:
                m = names[part.tag]
                text = part.text
                if m == "Наименование":
                    name = text.strip() if text else ""
                elif m == "Значение":
                    value = text.strip() if text else ""
                    if 0 <= quick < len(value):
                        self._check(m, value)
            if name:
                out.setdefault(name, value)
        return out

    def _prices(self, c: Any, out: dict[str, Any]) -> None:
        types = self.ctx.price_types
        prices: list[dict[str, str]] = []
        for p in c:
            price: dict[str, str] = {}
            for part in p:
                m = _NAMES[part.tag]
                if m == "ИдТипаЦены":
                    price["type_id"] = _text(part)
                elif m == "ЦенаЗаЕдиницу":
                    price["value"] = self._num(self._t(part, m))
                elif m == "Валюта":
                    price["currency"] = _text(part)
                elif m == "Единица":
                    price["unit"] = _text(part)
                elif m == "Коэффициент":
                    price["coefficient"] = self._num(_text(part))
                elif m == "Представление":
                    price["presentation"] = self._t(part, m)
            ptype = types.get(price.get("type_id", ""))
            if ptype is not None:
                price["type_name"] = ptype.get("name", "")
                if not price.get("currency") and ptype.get("currency"):
                    price["currency"] = ptype["currency"]
                if "tax_included" in ptype:
                    price["tax_included"] = ptype["tax_included"]
            prices.append(price)
        out["prices"] = prices
        if prices:
            first = prices[0]
            for src, dst in _FIRST_PRICE:
                if first.get(src):
                    out[dst] = first[src]

    def _stock(self, out: dict[str, Any], wid: str, qty: str) -> None:
        entry = {"warehouse_id": wid, "quantity": qty}
        name = self.ctx.warehouses.get(wid)
        if name is not None:
            entry["warehouse_name"] = name
        out.setdefault("stocks", []).append(entry)

    @staticmethod
    def _total_stock(out: dict[str, Any]) -> None:
        if out.get("quantity"):
            out["stock"] = out["quantity"]
            return
        stocks = out.get("stocks")
        if not stocks:
            return
        total = Decimal(0)
        try:
            for s in stocks:
                total += Decimal(s["quantity"])
        except (InvalidOperation, ValueError):
            return  # a quantity that is not a number: left for the mapping to reject
        if total.is_finite():
            out["stock"] = str(total)

    def _order(self, elem: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        t = self._t
        simple = {
            "Ид": "id",
            "Номер": "number",
            "Дата": "date",
            "Время": "time",
            "ХозОперация": "operation",
            "Роль": "role",
            "Валюта": "currency",
            "Комментарий": "comment",
            "ПометкаУдаления": "deleted_mark",
        }
        for c in elem:
            n = _NAMES[c.tag]
            key = simple.get(n)
            if key is not None:
                out[key] = t(c, n)
            elif n in ("Курс", "Сумма"):
                out["rate" if n == "Курс" else "total"] = self._num(t(c, n))
            elif n == "Контрагенты":
                out["counterparties"] = [self._party(p) for p in c]
            elif n == "Контрагент":  # some producers omit the Контрагенты wrapper
                out.setdefault("counterparties", []).append(self._party(c))
            elif n == "Товары":
                lines = []
                for i, line in enumerate(c, 1):
                    item = self._item(line)
                    item["line_no"] = i
                    kind = item.get("requisites", {}).get("ВидНоменклатуры")
                    if kind:
                        item["kind"] = kind
                    lines.append(item)
                out["lines"] = lines
            elif n == "ЗначенияРеквизитов":
                out["requisites"] = self._requisites(c)
        parties = out.get("counterparties")
        if parties:
            out["buyer"] = next(
                (p for p in parties if p.get("role", "").lower() == "покупатель"), parties[0]
            )
        if "deleted_mark" in out:
            out["deleted"] = out.pop("deleted_mark").lower() == "true"
        for key in ("generated_at", "schema_version"):
            value = self.ctx.header.get(key)
            if value is not None:
                out[key] = value
        return out

    def _party(self, c: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        role = c.get("Роль")
        if role:
            out["role"] = role.strip()
        simple = {
            "Ид": "id",
            "Наименование": "name",
            "ПолноеНаименование": "full_name",
            "ОфициальноеНаименование": "official_name",
            "Роль": "role",
            "Фамилия": "last_name",
            "Имя": "first_name",
            "Отчество": "middle_name",
            "ИНН": "inn",
            "КПП": "kpp",
            "ОКПО": "okpo",
        }
        t = self._t
        for part in c:
            n = _NAMES[part.tag]
            key = simple.get(n)
            if key is not None:
                out[key] = t(part, n)
            elif n in ("АдресРегистрации", "ЮридическийАдрес", "Адрес"):
                address = _child_text(part, "Представление")
                if address:
                    out.setdefault("address", address)
            elif n == "Контакты":
                out["contacts"] = [
                    {"type": _child_text(k, "Тип") or "", "value": _child_text(k, "Значение") or ""}
                    for k in part
                ]
            elif n == "Представители":
                reps = []
                for rep in part:
                    inner = next((x for x in rep if _NAMES[x.tag] == "Контрагент"), rep)
                    reps.append(
                        {
                            "relation": _child_text(inner, "Отношение") or "",
                            "id": _child_text(inner, "Ид") or "",
                            "name": _child_text(inner, "Наименование") or "",
                        }
                    )
                out["representatives"] = reps
        return out


def iter_documents(
    fileobj: IO[bytes],
    kind: str,
    *,
    skip: int = 0,
    encoding: str | None = None,
    max_field_bytes: int | None = None,
    decimal_comma: bool = True,
) -> Iterator[dict[str, Any] | RecordProblem]:
    """Stream the records of a CommerceML document of ``kind`` as flat dicts, in constant memory.

    Args:
        fileobj: the binary file; the XML declaration's encoding is honoured.
        kind: ``import``, ``offers`` or ``orders``.
        skip: records to pass over without flattening them (resuming).
        encoding: override the declared encoding.
        max_field_bytes: a value larger than this makes its record a ``RecordProblem``.
        decimal_comma: normalise decimal commas in numeric elements (see the config).

    Raises:
        DTDForbiddenError, UnsafeXMLError, EncodingError, ParseError: file-level failures,
        possibly after records were yielded.
    """
    reader = DocumentReader(kind, max_field_bytes=max_field_bytes, decimal_comma=decimal_comma)
    record_tag = RECORD_TAG[kind]
    sections = _SECTIONS[kind]
    context = hardened_iterparse(
        fileobj,
        events=("end",),
        tag=[f"{{*}}{t}" for t in (*sections, record_tag)],
        encoding=encoding,
    )
    n = 0
    first = True
    try:
        for _event, elem in context:
            if first:
                # the DOCTYPE, if any, precedes the root, so it is known by the first event
                forbid_doctype(elem.getroottree())
                first = False
            name = _local(elem.tag)
            if name != record_tag:
                reader.section(name, elem)
                release_parsed(elem)
                continue
            parent = elem.getparent()
            if parent is None or (
                (parent.getparent() is not None and _local(parent.tag) != "Контейнер")
                if kind == "orders"
                else _local(parent.tag) not in ("Товары", "Предложения")
            ):
                continue  # a nested match (not a record of this document): left to its parent
            n += 1
            item: dict[str, Any] | RecordProblem | None = None
            if n > skip:
                try:
                    item = reader.record(elem)
                except ValueTooLarge as big:
                    err = FieldTooLargeError(
                        f"a value of record {n} is larger than max_field_bytes",
                        field=big.name,
                        context={"record": n, "bytes": big.size, "limit": max_field_bytes},
                    )
                    item = RecordProblem(err, etree.tostring(elem, encoding="utf-8"))
            else:
                reader._capture_header(elem)
            release_parsed(elem)
            if item is not None:
                yield item
        if context.root is not None:
            forbid_doctype(context.root.getroottree())
    except etree.XMLSyntaxError as exc:
        raise translate_syntax_error(exc, context.error_log) from None
