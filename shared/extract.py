"""What a file is (decided by its bytes) and the text inside it.

`detect` sniffs the content: a PDF by its `%PDF-` header, a DOCX by being a zip with
`word/document.xml`, the text types (TXT, Markdown, CSV, JSON) by their extension AND by
decoding as text (JSON must also parse). Anything else - `.doc`, images, executables, a `.pdf`
that is not a PDF - is UnsupportedMediaType naming the allowed types.

`extract` never raises for a bad document: an encrypted or unreadable PDF comes back with
processed=False and the reason. pypdf and python-docx are imported only when a PDF or DOCX is
extracted (they ship with the files functions, not the shared layer).
"""
from __future__ import annotations

import io
import json
import logging
import re
import zipfile
from dataclasses import dataclass

from shared.errors import UnsupportedMediaType

log = logging.getLogger(__name__)

PDF = "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
TEXT_TYPES = {".txt": "text/plain", ".text": "text/plain", ".md": "text/markdown", ".markdown": "text/markdown",
              ".csv": "text/csv", ".json": "application/json"}
BY_EXTENSION = {".pdf": PDF, ".docx": DOCX, **TEXT_TYPES}
ALLOWED = "PDF (.pdf), Word (.docx), plain text (.txt), Markdown (.md), CSV (.csv), JSON (.json)"
MAX_DOCX_UNPACKED = 200 * 1024 * 1024  # a zip bomb dressed as a .docx stops here

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufeff]")
_BLANK_RUN = re.compile(r"\n{4,}")


@dataclass(frozen=True)
class Extraction:
    text: str | None
    processed: bool
    error: str | None = None
    truncated: bool = False


def extension(name: str) -> str:
    dot = name.rfind(".")
    return name[dot:].lower() if dot > 0 else ""


def unsupported(what: str) -> UnsupportedMediaType:
    return UnsupportedMediaType(f"{what}. Allowed types: {ALLOWED}")


def type_for_name(name: str) -> str:
    """The content type a file name promises (for presigned uploads, before any byte exists)."""
    ext = extension(name)
    if ext not in BY_EXTENSION:
        raise unsupported(f"Files of type '{ext or 'no extension'}' are not supported")
    return BY_EXTENSION[ext]


def _is_docx(data: bytes) -> bool:
    if not data.startswith(b"PK\x03\x04"):
        return False
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            names = set(zf.namelist())
            unpacked = sum(i.file_size for i in zf.infolist())
    except (zipfile.BadZipFile, ValueError, OSError):
        return False
    if unpacked > MAX_DOCX_UNPACKED:
        raise unsupported("The document unpacks to more than 200 MB")
    return "word/document.xml" in names


def decode_text(data: bytes) -> str | None:
    """The bytes as text (UTF-8 with or without BOM, UTF-16 with BOM, else Windows-1252), or
    None when they are not text (undecodable, or full of control characters like a binary)."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        candidates = ["utf-16"]
    else:
        candidates = ["utf-8-sig", "cp1252"]
    for encoding in candidates:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        controls = len(_CONTROL.findall(text))
        if "\x00" not in text and controls <= max(2, len(text) // 100):
            return text
        return None
    return None


def detect(data: bytes, name: str) -> str:
    """The content type of an upload, decided by its bytes; UnsupportedMediaType otherwise."""
    if data.lstrip(b"\r\n\t ")[:5] == b"%PDF-":
        return PDF
    if _is_docx(data):
        return DOCX
    ext = extension(name)
    if ext in TEXT_TYPES:
        text = decode_text(data)
        if text is None:
            raise unsupported(f"'{name}' does not contain text")
        if ext == ".json":
            try:
                json.loads(text)
            except ValueError:
                raise unsupported(f"'{name}' is not valid JSON") from None
        return TEXT_TYPES[ext]
    if ext in (".pdf", ".docx"):
        raise unsupported(f"'{name}' is not a valid {ext[1:].upper()} file")
    raise unsupported(f"Files of type '{ext or 'no extension'}' are not supported")


def clean(text: str) -> str:
    """Line breaks normalised, NUL and other control characters (and lone surrogates, which
    UTF-8 cannot hold) removed, runs of blank lines shortened; tabs and paragraphs kept."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return _BLANK_RUN.sub("\n\n\n", text).strip()


def _pdf_text(data: bytes) -> Extraction:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            try:
                opened = reader.decrypt("")
            except Exception:  # noqa: BLE001 - e.g. an AES cipher pypdf cannot open without extras
                opened = 0
            if not opened:
                return Extraction(None, False, "The PDF is encrypted (password-protected); its text cannot be read")
        pages = [page.extract_text() or "" for page in reader.pages]
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, OSError,
            RecursionError, NotImplementedError) as exc:
        log.info("unreadable pdf: %r", exc)
        return Extraction(None, False, "The PDF could not be read (it may be damaged)")
    text = "\n\n".join(p.strip() for p in pages if p.strip())
    if not text:
        return Extraction("", False, "The PDF has no text layer (it may be a scanned image)")
    return Extraction(text, True)


def _docx_text(data: bytes) -> Extraction:
    import docx
    from docx.table import Table

    try:
        document = docx.Document(io.BytesIO(data))
        blocks = []
        for block in document.iter_inner_content():
            if isinstance(block, Table):
                blocks.extend("\t".join(cell.text for cell in row.cells) for row in block.rows)
            else:
                blocks.append(block.text)
    except Exception as exc:  # noqa: BLE001 - python-docx/lxml raise many kinds for a damaged file
        log.info("unreadable docx: %r", exc)
        return Extraction(None, False, "The Word document could not be read (it may be damaged)")
    return Extraction("\n".join(blocks), True)


def extract(data: bytes, content_type: str, max_chars: int) -> Extraction:
    """The text of a file whose type `detect` decided, cleaned and capped at max_chars."""
    if content_type == PDF:
        found = _pdf_text(data)
    elif content_type == DOCX:
        found = _docx_text(data)
    else:
        text = decode_text(data)
        found = Extraction(text, True) if text is not None else Extraction(None, False, "The file is not text")
    if found.text is None:
        return found
    text = clean(found.text)
    if len(text) > max_chars:
        return Extraction(text[:max_chars], found.processed, found.error, truncated=True)
    return Extraction(text, found.processed, found.error)
