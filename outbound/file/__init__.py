"""File channel: CSV (formula-injection-safe cells) or JSONL exports, one file per day."""

from outbound.file.channel import FileChannel
from outbound.file.config import FileConfig

__all__ = ["FileChannel", "FileConfig"]
