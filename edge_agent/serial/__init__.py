"""Serial ingestion: sans-I/O line decoders (csv, jsonl, kv, step markers) and the port reader."""

from edge_agent.serial.decoders import CsvDecoder, JsonlDecoder, KvDecoder, LineDecoder, make_decoder
from edge_agent.serial.stats import DecodeStats

__all__ = ["CsvDecoder", "DecodeStats", "JsonlDecoder", "KvDecoder", "LineDecoder", "make_decoder"]
