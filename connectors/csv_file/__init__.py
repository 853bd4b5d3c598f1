"""CSV file-drop connector: strict decoding, stable row keys, resumable per file."""

from connectors.csv_file.config import CsvFileConfig
from connectors.csv_file.connector import CsvFileConnector

__all__ = ["CsvFileConfig", "CsvFileConnector"]
