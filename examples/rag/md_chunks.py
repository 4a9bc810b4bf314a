"""Split Markdown into chunks that stay inside one section and under a size bound.

A chunk keeps the heading of the section it came from (and a GitHub-style anchor for it), so an
answer can cite ``docs/operations.md#api-keys``. Paragraphs are packed together up to
``max_chars``; consecutive chunks of one section share up to ``overlap`` characters so that a
sentence cut at a chunk border is still whole in one of them. Fenced code blocks are kept whole
where they fit, and ``#`` lines inside them are not headings.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, replace

HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
FENCE = re.compile(r"^\s*(`{3,}|~{3,})")


@dataclass(frozen=True)
class Chunk:
    heading: str  # the section's own heading ("" before the first heading)
    anchor: str  # GitHub-style anchor of that heading ("" before the first heading)
    title: str  # the document's first heading, or "" when it has none
    text: str

    def embedding_input(self) -> str:
        """The text that gets embedded: the chunk under its title and heading, for context."""
        parts = [self.title] if self.title else []
        if self.heading and self.heading != self.title:
            parts.append(self.heading)
        context = " > ".join(parts)
        return f"{context}\n\n{self.text}" if context else self.text

    def halves(self) -> tuple[Chunk, Chunk] | None:
        """The chunk cut in two at the line break or space nearest its middle; None if too short."""
        if len(self.text) < 40:
            return None
        middle = len(self.text) // 2
        cuts = [i for i in (self.text.rfind("\n", 0, middle), self.text.find("\n", middle),
                            self.text.rfind(" ", 0, middle), self.text.find(" ", middle)) if 0 < i < len(self.text) - 1]
        cut = min(cuts, key=lambda i: abs(i - middle), default=middle)
        first, second = self.text[:cut].strip(), self.text[cut:].strip()
        return replace(self, text=first), replace(self, text=second)


@dataclass
class _Section:
    heading: str
    paragraphs: list[str]


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _sections(markdown: str) -> Iterator[_Section]:
    section = _Section("", [])
    lines: list[str] = []
    fence: str | None = None

    def flush() -> None:
        if any(line.strip() for line in lines):
            section.paragraphs.append("\n".join(lines).strip("\n"))
        lines.clear()

    for line in markdown.splitlines():
        if fence is not None:  # inside a code block: everything is text until the closing fence
            lines.append(line)
            if line.strip().startswith(fence):
                fence = None
            continue
        opening = FENCE.match(line)
        heading = None if opening else HEADING.match(line)
        if opening:
            fence = opening.group(1)
            lines.append(line)
        elif heading:
            flush()
            yield section
            section = _Section(heading.group(2).strip(), [])
        elif not line.strip():
            flush()
        else:
            lines.append(line)
    flush()
    yield section


def _split_long(paragraph: str, max_chars: int) -> list[tuple[str, str]]:
    """A paragraph as pieces under the bound, each with the separator that preceded it:
    cut at line breaks, then at spaces, then anywhere."""
    if len(paragraph) <= max_chars:
        return [(paragraph, "")]
    for separator in ("\n", " "):
        parts = paragraph.split(separator)
        if len(parts) > 1:
            return _pack(parts, separator, max_chars)
    return [(paragraph[i:i + max_chars], "") for i in range(0, len(paragraph), max_chars)]


def _pack(parts: list[str], separator: str, max_chars: int) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    current, joiner = "", ""
    for index, part in enumerate(parts):
        for number, (piece, inner) in enumerate(_split_long(part, max_chars)):
            before = separator if number == 0 and index > 0 else inner
            candidate = f"{current}{before}{piece}" if current else piece
            if current and len(candidate) <= max_chars:
                current = candidate
                continue
            if current:
                out.append((current, joiner))
            current, joiner = piece, before
    if current:
        out.append((current, joiner))
    return out


def _tail(text: str, overlap: int) -> str:
    """The last ``overlap`` characters of ``text``, starting at a word."""
    if overlap <= 0 or not text:
        return ""
    if len(text) <= overlap:
        return text
    tail = text[-overlap:]
    space = tail.find(" ")
    return tail[space + 1:] if 0 <= space < len(tail) - 1 else tail


def _chunk_section(paragraphs: list[str], max_chars: int, overlap: int) -> list[str]:
    """Pack the section's pieces into chunks; paragraphs join with a blank line, the pieces of one
    cut paragraph with the separator they were cut at. Long paragraphs are cut short enough that
    the overlap carried from the previous chunk fits in front of each piece."""
    pieces = [(piece, sep if n else "\n\n") for paragraph in paragraphs
              for n, (piece, sep) in enumerate(_split_long(paragraph, max_chars - overlap - 2))]
    chunks: list[str] = []
    current = ""
    fresh = False  # whether ``current`` holds more than the overlap carried from the last chunk
    for piece, separator in pieces:
        candidate = f"{current}{separator}{piece}" if current else piece
        if current and len(candidate) > max_chars:
            if fresh:
                chunks.append(current)
            tail = _tail(current, overlap) if fresh else ""
            current = f"{tail}{separator}{piece}" if tail and len(tail) + len(separator) + len(piece) <= max_chars \
                else piece
        else:
            current = candidate
        fresh = True
    if current and fresh:
        chunks.append(current)
    return chunks


def chunk_markdown(markdown: str, max_chars: int = 500, overlap: int = 80) -> list[Chunk]:
    """The chunks of one Markdown document, in reading order."""
    if max_chars < 50:
        raise ValueError("max_chars must be at least 50")
    if not 0 <= overlap < max_chars // 2:
        raise ValueError("overlap must be between 0 and half of max_chars")
    sections = list(_sections(markdown))
    title = next((s.heading for s in sections if s.heading), "")
    chunks: list[Chunk] = []
    for section in sections:
        slug = anchor(section.heading) if section.heading else ""
        for text in _chunk_section(section.paragraphs, max_chars, overlap):
            chunks.append(Chunk(heading=section.heading, anchor=slug, title=title, text=text))
    return chunks
