"""The keyphrase HTML page: self-contained, escaped, every occurrence marked in place; and
rendered by a real headless Chromium when one is installed."""
from __future__ import annotations

import io
import json
import re
import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path

import pytest

from bertkpe.html_page import HtmlPageWriter, render_document, shade, write_html_page

HOSTILE = "<script>window.injected = 1</script>"
TEXT = (f"Deep neural networks & \"graph\" models.\r\n{HOSTILE} A neural network\tof graph models; "
        "deep neural networks again.")


def occurrences(text: str, phrase: str) -> list[list[int]]:
    return [[match.start(), match.end()] for match in re.finditer(re.escape(phrase), text)]


# Nested ("neural networks" in "deep neural networks"), crossing ("neural network" against
# "network\tof graph"), repeated, and one phrase without occurrences.
KEYPHRASES = [
    ("deep neural networks", 0.9, occurrences(TEXT, "Deep neural networks") + occurrences(TEXT, "deep neural networks")),
    ("neural networks", 0.8, occurrences(TEXT, "neural networks")),
    ("graph models", 0.7, occurrences(TEXT, "graph\" models") + occurrences(TEXT, "graph models")),
    ("network of graph", 0.6, occurrences(TEXT, "network\tof graph")),
    ("neural network", 0.5, occurrences(TEXT, "neural network")),
    ("</mark><b>x", 0.4, []),
]


class PageReader(HTMLParser):
    """Each document pane's text and the text inside each of its occurrences' marks."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.depth = 0  # elements open inside the current text pane; 0: outside
        self.texts: list[str] = []
        self.marked: list[dict[str, str]] = []
        self.first_ids: list[set[str]] = []
        self.open_marks: list[str | None] = []
        self.scripts = 0

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.scripts += tag == "script"
        if self.depth:
            self.depth += 1
            if tag == "mark":
                occurrence = attributes["data-occurrence"]
                self.open_marks.append(occurrence)
                self.marked[-1].setdefault(occurrence, "")
                if "id" in attributes:
                    self.first_ids[-1].add(attributes["id"])
            else:
                self.open_marks.append(None)
        elif tag == "div" and attributes.get("class") == "text":
            self.depth = 1
            self.texts.append("")
            self.marked.append({})
            self.first_ids.append(set())

    def handle_endtag(self, tag):
        if self.depth:
            self.depth -= 1
            if self.depth:
                self.open_marks.pop()

    def handle_data(self, data):
        if self.depth:
            self.texts[-1] += data
            for occurrence in set(self.open_marks) - {None}:
                self.marked[-1][occurrence] += data


def read_page(page: str) -> PageReader:
    reader = PageReader()
    reader.feed(page)
    reader.close()
    return reader


def page_of(records) -> str:
    out = io.StringIO()
    with HtmlPageWriter(out, title="Test <page>") as writer:
        for record in records:
            writer.add(*record)
    return out.getvalue()


def test_every_occurrence_is_marked_and_the_text_kept_exactly():
    reader = read_page(page_of([("doc", TEXT, KEYPHRASES)]))
    assert reader.texts == [TEXT]  # escaping and marks change nothing, "\r" included
    expected = {f"{rank}-{number}": TEXT[start:end]
                for rank, (_, _, offsets) in enumerate(KEYPHRASES, start=1)
                for number, (start, end) in enumerate(sorted(offsets))}
    assert reader.marked == [expected]
    assert reader.first_ids == [{f"doc-1-k{rank}-o{number}" for rank, number in
                                 (key.split("-") for key in expected)}]


def test_page_is_self_contained_and_escaped():
    page = page_of([(HOSTILE, TEXT, KEYPHRASES), (7, "", [])])
    assert not re.search(r"https?:|//[\w.]+/|\burl\(|@import|<link|<iframe|<img|<object", page, re.IGNORECASE)
    assert not re.search(r"\bsrc\s*=", page)
    assert all(href.startswith("#") for href in re.findall(r'href="([^"]*)"', page))
    assert page.count("<script") == 1 and read_page(page).scripts == 1  # the page's own
    assert HOSTILE not in page and "&lt;script&gt;window.injected = 1&lt;/script&gt;" in page
    assert "&lt;/mark&gt;&lt;b&gt;x" in page and "Test &lt;page&gt;" in page
    assert "Content-Security-Policy" in page and "default-src 'none'" in page


def test_ranked_list_links_to_first_occurrences_and_shades_by_rank():
    section = render_document(3, "doc", TEXT, KEYPHRASES)
    links = re.findall(r'<li data-rank="(\d+)">(<a href="#([^"]+)">)?', section)
    assert [(rank, target) for rank, _, target in links] == [
        ("1", "doc-3-k1-o0"), ("2", "doc-3-k2-o0"), ("3", "doc-3-k3-o0"), ("4", "doc-3-k4-o0"),
        ("5", "doc-3-k5-o0"), ("6", "")]
    assert all(f'id="{target}"' in section for _, _, target in links if target)
    assert [shade(rank, 6) for rank in range(1, 7)] == sorted((shade(rank, 6) for rank in range(1, 7)), reverse=True)
    assert shade(1, 6) > shade(6, 6) > 0 and shade(1, 1) == shade(1, 6)


def test_streaming_writer_index_and_file(tmp_path):
    path = tmp_path / "page.html"
    write_html_page(path, iter([("a", "alpha beta", [("alpha", 1.0, [[0, 5]])]), ("b", "", [])]))
    page = path.read_text(encoding="utf-8")
    assert page.index("<main>") < page.index('id="doc-2"') < page.index("<nav>")
    assert re.findall(r'<nav>.*</nav>', page, re.S)[0].count("<li>") == 2 and "2 documents" in page
    writer = HtmlPageWriter(io.StringIO())
    writer.close()
    writer.close()
    with pytest.raises(ValueError, match="closed"):
        writer.add("c", "text", [])


@pytest.mark.parametrize("keyphrases, message", [
    ([("alpha", 1.0)], "extract with offsets=True"),
    ([("alpha", 1.0, [[3, 20]])], r"offsets \[3, 20\] are not inside the text of 10 characters"),
    ([("alpha", 1.0, [[4, 4]])], "not inside"),
])
def test_bad_keyphrases_are_refused(keyphrases, message):
    with pytest.raises(ValueError, match=message):
        render_document(1, "doc", "alpha beta", keyphrases)


# ----------------------------------------------------------------------------- in a real browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed "
                                    "(apt-get install -y chromium) so the page is not rendered")

# Appended to a copy of the page by the test only: what the browser laid out, as JSON.
LAYOUT_PROBE = """<script>
(function(){
 function opacity(color){var c=color.match(/[\\d.]+/g).map(Number);return c.length>3?c[3]:1;}
 var marks=[].slice.call(document.querySelectorAll('.text mark.kp'));
 var shown=marks.filter(function(m){var r=m.getBoundingClientRect();return r.width>0&&r.height>0;});
 var colored=marks.filter(function(m){var c=getComputedStyle(m).backgroundColor;return c!=='rgba(0, 0, 0, 0)'&&c!=='transparent';});
 var pane=document.querySelector('#doc-2 .text');
 var first=document.querySelector('.text mark.kp[data-rank="1"]'), last=document.querySelector('.text mark.kp[data-rank="5"]');
 var report={marks:marks.length, shown:shown.length, colored:colored.length,
  occurrences:marks.map(function(m){return m.closest('details').id+':'+m.getAttribute('data-occurrence');}),
  best:opacity(getComputedStyle(first).backgroundColor), worst:opacity(getComputedStyle(last).backgroundColor),
  paneScrolls:pane.scrollHeight>pane.clientHeight&&getComputedStyle(pane).overflowY==='auto',
  injected:window.injected===1, documents:document.querySelectorAll('details.doc').length,
  indexed:document.querySelectorAll('nav li a').length};
 var out=document.createElement('pre');out.id='layout-report';out.textContent=JSON.stringify(report);
 document.body.appendChild(out);
})();
</script></body>"""


def chromium(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--window-size=1280,900", *arguments], capture_output=True, text=True, timeout=120)


def png_size_and_pixels(path: Path) -> tuple[tuple[int, int], bytes]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, size, compressed = 8, None, b""
    while position < len(data):
        (length,) = struct.unpack(">I", data[position:position + 4])
        kind, body = data[position + 4:position + 8], data[position + 8:position + 8 + length]
        if kind == b"IHDR":
            size = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            compressed += body
        position += 12 + length
    return size, zlib.decompress(compressed)


@needs_chromium
def test_chromium_renders_the_highlights(tmp_path):
    long_text = "\n".join(f"Line {number}: graph models of neural networks." for number in range(200))
    records = [("doc", TEXT, KEYPHRASES),
               ("long", long_text, [("graph models", 1.0, occurrences(long_text, "graph models"))])]
    page = tmp_path / "page.html"
    write_html_page(page, records)
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", LAYOUT_PROBE), encoding="utf-8")

    dumped = chromium("--dump-dom", probe.as_uri())
    match = re.search(r'<pre id="layout-report">(.*?)</pre>', dumped.stdout)
    assert match, dumped.stderr[-2000:]
    report = json.loads(match.group(1).replace("&quot;", '"'))
    expected_marks = len(re.findall(r'<mark class="kp"', page.read_text(encoding="utf-8").split("<main>")[1]))
    assert report["marks"] == expected_marks == report["shown"] == report["colored"]
    assert len(set(report["occurrences"])) == sum(len(offsets) for _, _, offsets in KEYPHRASES) + 200
    assert report["best"] > report["worst"] > 0  # the best rank is the most opaque
    assert report["paneScrolls"] and not report["injected"]
    assert report["documents"] == report["indexed"] == 2

    screenshot = tmp_path / "page.png"
    chromium(f"--screenshot={screenshot}", page.as_uri())
    size, pixels = png_size_and_pixels(screenshot)
    assert size == (1280, 900)
    assert len(set(pixels)) > 64  # not a blank image: text and highlights give many byte values
