"""1C:Enterprise's side of the CommerceML HTTP exchange, as its site-exchange module plays it.

``OneCExchange`` speaks the plain-text protocol over httpx: ``checkauth`` with HTTP Basic (UTF-8
credentials, Cyrillic passwords included), the session cookie on every later call, ``init``,
``file`` in chunks of at most the announced ``file_limit``, then ``import`` repeated while the
site answers ``progress``.  Answers are parsed exactly as 1C does: the first line is the verdict.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

import httpx


class ExchangeFailed(Exception):
    """The site answered ``failure`` (or an unexpected text)."""

    def __init__(self, step: str, status: int, text: str) -> None:
        super().__init__(f"{step}: HTTP {status}: {text!r}")
        self.step = step
        self.status = status
        self.text = text


@dataclass
class OneCExchange:
    """One exchange session against ``/exchange/commerceml/<pipeline>``."""

    base_url: str
    pipeline: str
    username: str
    password: str
    exchange_type: str = "catalog"
    cookie: tuple[str, str] | None = None
    zip_allowed: bool = False
    file_limit: int = 0
    log: list[tuple[str, int, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.http = httpx.Client(base_url=self.base_url, timeout=60)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> OneCExchange:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        return f"/exchange/commerceml/{self.pipeline}"

    def _call(self, mode: str, *, content: bytes | None = None, **params: str) -> httpx.Response:
        query = {"type": self.exchange_type, "mode": mode, **params}
        headers = {}
        if self.cookie:  # 1C sends the cookie it was given as a plain header
            headers["Cookie"] = f"{self.cookie[0]}={self.cookie[1]}"
        if mode == "checkauth":
            raw = f"{self.username}:{self.password}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(raw).decode("ascii")
        if content is None:
            r = self.http.get(self.url, params=query, headers=headers)
        else:
            r = self.http.post(self.url, params=query, headers=headers, content=content)
        self.log.append((mode, r.status_code, r.text))
        return r

    def checkauth(self) -> None:
        r = self._call("checkauth")
        lines = r.text.splitlines()
        if r.status_code != 200 or len(lines) < 3 or lines[0] != "success":
            raise ExchangeFailed("checkauth", r.status_code, r.text)
        self.cookie = (lines[1], lines[2])

    def init(self) -> None:
        r = self._call("init")
        values = dict(line.split("=", 1) for line in r.text.splitlines() if "=" in line)
        if r.status_code != 200 or "file_limit" not in values:
            raise ExchangeFailed("init", r.status_code, r.text)
        self.zip_allowed = values.get("zip") == "yes"
        self.file_limit = int(values["file_limit"])

    def send_file(self, filename: str, data: bytes) -> int:
        """Upload ``data`` in chunks of at most ``file_limit``; return the number of POSTs."""
        step = self.file_limit or len(data) or 1
        chunks = [data[i : i + step] for i in range(0, len(data), step)] or [b""]
        for chunk in chunks:
            r = self._call("file", content=chunk, filename=filename)
            if r.status_code != 200 or r.text.splitlines()[:1] != ["success"]:
                raise ExchangeFailed("file", r.status_code, r.text)
        return len(chunks)

    def import_file(self, filename: str, max_rounds: int = 20) -> str:
        """Call ``mode=import`` until ``success`` (``progress`` means call again)."""
        for _ in range(max_rounds):
            r = self._call("import", filename=filename)
            verdict = r.text.splitlines()[:1]
            if verdict == ["success"]:
                return r.text
            if verdict != ["progress"]:
                raise ExchangeFailed("import", r.status_code, r.text)
        raise ExchangeFailed("import", 200, "still in progress")

    def query(self) -> httpx.Response:
        return self._call("query")

    def success(self) -> str:
        return self._call("success").text

    def run_catalog(self, files: dict[str, bytes]) -> None:
        """The whole catalogue exchange: checkauth, init, every file, then import each."""
        self.checkauth()
        self.init()
        for name, data in files.items():
            self.send_file(name, data)
        for name in files:
            self.import_file(name)
