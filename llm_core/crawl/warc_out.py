"""The crawl's WARC files: one gzip member per record (warcio), rotated by size.

Common Crawl's layout: ``pages-00000.warc.gz``, ``pages-00001.warc.gz``... each closed once it
passes ``max_bytes`` (~1 GB in production), so memory does not grow with the crawl and the
files can be read back in parallel, one Spark task each. ``position()`` (file, end offset) is
committed with each page's state (llm_core.crawl.frontier); :meth:`RotatingWarc.resume` cuts a
file back to that offset, so a record written by a killed process and never committed is gone.
"""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import httpx
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

WARC_PATTERN = "pages-{:05d}.warc.gz"
# httpx hands us decoded bodies; these headers would describe the wire bytes, not the payload kept.
_WIRE_HEADERS = {"content-encoding", "transfer-encoding", "content-length"}


class RotatingWarc:
    def __init__(self, directory: Path, max_bytes: int):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.index = 0
        self.file = None
        self.writer: WARCWriter | None = None

    def resume(self, index: int, offset: int) -> None:
        """Continue file ``index`` from ``offset``; anything past it (uncommitted) is cut, later files removed."""
        for path in self.directory.glob("pages-*.warc.gz"):
            if int(path.name[6:11]) > index:
                path.unlink()
        self.index = index
        path = self.path(index)
        self.file = open(path, "r+b" if path.exists() else "wb")
        self.file.truncate(offset)
        self.file.seek(offset)
        self.writer = WARCWriter(self.file, gzip=True)

    def path(self, index: int) -> Path:
        return self.directory / WARC_PATTERN.format(index)

    def write(self, url: str, response: httpx.Response, body: bytes) -> None:
        """Write the response (status, headers, the decoded body) as a WARC ``response`` record."""
        if self.file is None:
            self.resume(0, 0)
        elif self.file.tell() >= self.max_bytes:
            self.file.close()
            self.resume(self.index + 1, 0)
        headers = [(k, v) for k, v in response.headers.items() if k.lower() not in _WIRE_HEADERS]
        headers.append(("Content-Length", str(len(body))))
        http_headers = StatusAndHeaders(f"{response.status_code} {response.reason_phrase}", headers,
                                        protocol="HTTP/1.1")
        record = self.writer.create_warc_record(url, "response", payload=BytesIO(body), http_headers=http_headers)
        self.writer.write_record(record)
        self.file.flush()

    def position(self) -> tuple[int, int]:
        return (self.index, self.file.tell() if self.file else 0)

    def files(self) -> list[Path]:
        """The WARC files written, non-empty ones only, in order."""
        return sorted(p for p in self.directory.glob("pages-*.warc.gz") if p.stat().st_size > 0)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
