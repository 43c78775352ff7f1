"""The committed HTML reports as a browser shows them: rendered in headless Chromium, their text
holds no literal Markdown (backticks, ``**``, ``](``): inline Markdown must have become HTML."""

from __future__ import annotations

import html
import re
import subprocess
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
REPORTS = sorted((Path(__file__).resolve().parent.parent / "docs" / "results").glob("*/report.html"))

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="no Chromium at /usr/bin/chromium")]


def _rendered_text(page: Path, profile: Path) -> str:
    dom = subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", f"--user-data-dir={profile}", "--dump-dom",
         page.as_uri()], capture_output=True, text=True, timeout=120, check=True).stdout
    assert "</body>" in dom, f"Chromium rendered no page for {page}"
    # The visible text: the DOM without its style block, tags and (base64) attributes.
    dom = re.sub(r"<style.*?</style>", " ", dom, flags=re.S)
    return html.unescape(re.sub(r"<[^>]*>", " ", dom))


def test_there_are_committed_reports():
    assert REPORTS, "no docs/results/*/report.html"


@pytest.mark.parametrize("page", REPORTS, ids=lambda p: p.parent.name)
def test_rendered_report_has_no_literal_markdown(page, tmp_path):
    text = _rendered_text(page, tmp_path / "profile")
    assert "BlockSwap experiment report" in text
    for mark in ("`", "**", "]("):
        at = text.find(mark)
        assert at < 0, f"{page.parent.name}: literal {mark!r} in the rendered text: ...{text[max(0, at - 60):at + 60]}..."
