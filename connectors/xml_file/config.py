"""Configuration of the XML file-drop connector."""

from __future__ import annotations

from pydantic import Field

from connectors.files import FileSourceConfig


class XmlFileConfig(FileSourceConfig):
    """Where the XML files are and which element is one record."""

    record_tag: str = Field(
        min_length=1,
        pattern=r"^[^\s{}:<>/]+$",
        description="Local name of the record element, matched in any namespace.",
        examples=["Товар", "Document", "Lead"],
    )
