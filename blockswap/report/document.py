"""A report as a list of sections, written twice from the same content: ``report.md`` (images
beside it) and a self-contained ``report.html`` (images inlined as base64 PNG)."""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..files import atomic_write_text


@dataclass
class Table:
    headers: Sequence[str]
    rows: list[Sequence[object]]
    caption: str = ""


@dataclass
class Section:
    title: str
    text: list[str] = field(default_factory=list)  # paragraphs (plain text, `code` allowed)
    tables: list[Table] = field(default_factory=list)
    images: list[tuple[str, str]] = field(default_factory=list)  # (file name in the report folder, caption)


def write_markdown(title: str, intro: list[str], sections: list[Section], path: Path) -> Path:
    out = [f"# {title}", "", *[p + "\n" for p in intro]]
    for s in sections:
        out += [f"## {s.title}", ""]
        out += [p + "\n" for p in s.text]
        for t in s.tables:
            if t.caption:
                out += [t.caption, ""]
            out.append("| " + " | ".join(map(str, t.headers)) + " |")
            out.append("|" + "|".join("---" for _ in t.headers) + "|")
            out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in t.rows]
            out.append("")
        for name, caption in s.images:
            out += [f"![{caption}]({name})", "", f"*{caption}*", ""]
    return atomic_write_text(path, "\n".join(out).rstrip() + "\n")


def write_html(title: str, intro: list[str], sections: list[Section], folder: Path, path: Path) -> Path:
    body = [f"<h1>{html.escape(title)}</h1>", *[f"<p>{_inline(p)}</p>" for p in intro]]
    toc = "".join(f'<li><a href="#s{i}">{html.escape(s.title)}</a></li>' for i, s in enumerate(sections))
    body.append(f"<ol class='toc'>{toc}</ol>")
    for i, s in enumerate(sections):
        body.append(f'<h2 id="s{i}">{html.escape(s.title)}</h2>')
        body += [f"<p>{_inline(p)}</p>" for p in s.text]
        for t in s.tables:
            head = "".join(f"<th>{_inline(str(h))}</th>" for h in t.headers)
            rows = "".join("<tr>" + "".join(f"<td>{_inline(_cell(c))}</td>" for c in row) + "</tr>"
                           for row in t.rows)
            cap = f"<caption>{_inline(t.caption)}</caption>" if t.caption else ""
            body.append(f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        for name, caption in s.images:
            data = base64.b64encode((folder / name).read_bytes()).decode("ascii")
            body.append(f'<figure><img alt="{html.escape(plain(caption))}" src="data:image/png;base64,{data}">'
                        f"<figcaption>{_inline(caption)}</figcaption></figure>")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
caption {{ text-align: left; font-style: italic; padding-bottom: 0.3em; }}
figure {{ margin: 1em 0; }} img {{ max-width: 100%; }} figcaption {{ font-style: italic; color: #555; }}
code {{ background: #f3f3f3; padding: 0 0.2em; }}
</style></head><body>
{chr(10).join(body)}
</body></html>
"""
    return atomic_write_text(path, page)


def _cell(value: object) -> str:
    return "-" if value is None else str(value)


_CODE = re.compile(r"`([^`]+)`")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_STRONG = re.compile(r"\*\*(.+?)\*\*")
_EM = re.compile(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])")


def _inline(text: str) -> str:
    """The inline Markdown the reports use, as HTML: `code` (its content verbatim), **strong**,
    *emphasis* and [links](target); everything else escaped."""
    out = []
    for i, part in enumerate(_CODE.split(text)):
        if i % 2:  # inside backticks: no further markup
            out.append(f"<code>{html.escape(part)}</code>")
            continue
        part = html.escape(part, quote=False)
        part = _LINK.sub(lambda m: f'<a href="{html.escape(m.group(2))}">{m.group(1)}</a>', part)
        part = _STRONG.sub(r"<strong>\1</strong>", part)
        out.append(_EM.sub(r"<em>\1</em>", part))
    return "".join(out)


def plain(text: str) -> str:
    """`text` without its inline Markdown (for attributes such as an image's alt text)."""
    text = _CODE.sub(r"\1", text)
    text = _LINK.sub(r"\1", text)
    return _EM.sub(r"\1", _STRONG.sub(r"\1", text))


def read_markdown(path: Path) -> tuple[str, list[str], list[Section]]:
    """The title, intro and sections of a ``report.md`` that `write_markdown` wrote: the inverse,
    so a committed report's HTML can be written again without its experiment store."""
    title, intro, sections = "", [], []
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    pending: list[str] = []  # a paragraph that may turn out to be the caption of the next table
    i = 0
    while i < len(lines):
        line = lines[i]
        text = sections[-1].text if sections else intro
        if line.startswith("# ") and not title:
            title = line[2:]
        elif line.startswith("## "):
            text += pending
            pending = []
            sections.append(Section(line[3:]))
        elif line.startswith("|"):
            headers = _row(line)
            rows = []
            i += 2  # past the header and the |---| line
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(_row(lines[i]))
                i += 1
            sections[-1].tables.append(Table(headers, rows, pending[-1] if pending else ""))
            text += pending[:-1]
            pending = []
            continue
        elif (m := re.fullmatch(r"!\[(.*)\]\(([^)\s]+)\)", line)) and sections:
            text += pending
            pending = []
            sections[-1].images.append((m.group(2), m.group(1)))
            i += 3  # past the blank line and the italic caption that repeats the alt text
        elif line.strip():
            pending.append(line)
        i += 1
    (sections[-1].text if sections else intro).extend(pending)
    return title, intro, sections


def _row(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split(" | ")]
