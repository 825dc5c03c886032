"""The small Markdown subset of align's reports (e.g. paper_figures' REPORT.md) as HTML, images embedded.

Handles headings (``#`` to ``######``), paragraphs, ``- `` bullet lists, pipe tables (``| a | b |`` with a
``|---|`` separator row), ``**bold**``, `` `code` `` and images ``![alt](file.png)``, which are embedded as
``data:`` URIs so that the page stays one self-contained file. Anything else is shown as plain text.
"""

from __future__ import annotations

import base64
import html
import mimetypes
import re
from pathlib import Path

_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")


def _inline(text: str, base: Path) -> str:
    """One line's inline markup as HTML (escaped first; images embedded from ``base``)."""
    def image(match):
        alt, target = match.group(1), html.unescape(match.group(2))
        path = base / target
        kind = mimetypes.guess_type(path.name)[0] or ""
        if not kind.startswith("image/") or not path.is_file():
            return f"[image {alt}: {html.escape(target)} not found]"
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        return f'<img alt="{html.escape(html.unescape(alt))}" src="data:{kind};base64,{data}" style="max-width: 100%">'

    text = html.escape(text, quote=False)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)
    return _IMAGE.sub(image, text)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def markdown_html(text: str, base: str | Path = ".") -> str:
    """``text`` (Markdown, the subset above) as an HTML fragment.

    Args:
      text: the Markdown.
      base: the folder image paths are relative to (a report's folder).

    Returns:
      HTML; every image that exists is embedded as a data URI, a missing one is named in the text.
    """
    base = Path(base)
    out, paragraph, lines, i = [], [], text.splitlines(), 0

    def flush():
        if paragraph:
            out.append("<p>" + " ".join(_inline(p, base) for p in paragraph) + "</p>")
            paragraph.clear()

    while i < len(lines):
        line = lines[i]
        heading = re.match(r"(#{1,6})\s+(.*)", line)
        if heading:
            flush()
            level = len(heading.group(1))
            out.append(f"<h{level}>{_inline(heading.group(2), base)}</h{level}>")
        elif line.lstrip().startswith("|") and i + 1 < len(lines) and re.fullmatch(r"\s*\|?[\s:|-]+\|?\s*", lines[i + 1]):
            flush()
            head = "".join(f"<th>{_inline(c, base)}</th>" for c in _cells(line))
            body = []
            i += 2
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                body.append("<tr>" + "".join(f"<td>{_inline(c, base)}</td>" for c in _cells(lines[i])) + "</tr>")
                i += 1
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")
            continue
        elif re.match(r"\s*[-*]\s+", line):
            flush()
            items = []
            while i < len(lines) and re.match(r"\s*[-*]\s+", lines[i]):
                item = re.sub(r"^\s*[-*]\s+", "", lines[i])
                items.append(f"<li>{_inline(item, base)}</li>")
                i += 1
            out.append(f"<ul>{''.join(items)}</ul>")
            continue
        elif not line.strip():
            flush()
        else:
            paragraph.append(line)
        i += 1
    flush()
    return "\n".join(out)
