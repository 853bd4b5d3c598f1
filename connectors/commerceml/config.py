"""Configuration of the CommerceML 2.x file connector."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from connectors.files import FileSourceConfig

DocumentKind = Literal["import", "offers", "orders"]


class ExchangeCredentials(BaseModel):
    """The login 1C uses for the HTTP exchange (``mode=checkauth``, HTTP Basic)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    username: str = Field(min_length=1, description="Login 1C sends (UTF-8, any script).")
    password: SecretStr = Field(description="Password 1C sends (UTF-8, any script).")
    file_limit: int = Field(
        8 * 1024**2,
        ge=1024,
        description="Largest chunk (bytes) 1C may POST per mode=file request (init answer).",
    )


class CommerceMLConfig(FileSourceConfig):
    """Where the CommerceML files are and which document kind they hold."""

    document: DocumentKind | Literal["auto"] = Field(
        "auto",
        description=(
            "The document kind to read: 'import' (Каталог/Товары/Товар: one record per product), "
            "'offers' (ПакетПредложений/Предложения/Предложение, also the split prices/rests "
            "files of 2.08+: one record per offer), 'orders' (Документ: one record per order "
            "with its lines and counterparties), or 'auto' (detected from the root's children). "
            "A file of another kind fails with a ConfigError."
        ),
        examples=["auto", "import", "offers", "orders"],
    )
    decimal_comma: bool = Field(
        True,
        description=(
            "In CommerceML's numeric elements (prices, quantities, sums, rates: xs:decimal, never "
            "digit-grouped) read a comma as the decimal point and drop space/NBSP grouping, so "
            "'1 719,50' is emitted as '1719.50'. Free-text values (property values, "
            "requisites, presentations) are always left raw."
        ),
    )
    exchange: ExchangeCredentials | None = Field(
        None,
        description=(
            "Credentials of the CommerceML HTTP exchange (1C pushes to "
            "/exchange/commerceml/<pipeline>); None disables the exchange for this pipeline."
        ),
    )
