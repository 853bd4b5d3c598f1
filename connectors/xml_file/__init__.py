"""XML file-drop connector: hardened streaming parse, stable record keys, resumable per file."""

from connectors.xml_file.config import XmlFileConfig
from connectors.xml_file.connector import XmlFileConnector

__all__ = ["XmlFileConfig", "XmlFileConnector"]
