"""The keyphrase HTML page: self-contained, escaped, every occurrence marked in place, split
into pages with an index for large corpora; and what a reader sees in a real headless
Chromium (`.ci/run` installs it; elsewhere those tests skip without it)."""
from __future__ import annotations

import html
import io
import json
import os
import re
import shutil
import struct
import subprocess
import tempfile
import zlib
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from bertkpe.html_page import DOCUMENTS_PER_PAGE, HtmlPageWriter, render_document, shade, write_html_page

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


def assert_self_contained(page: str) -> None:
    assert not re.search(r"https?:|//[\w.]+/|\burl\(|@import|<link|<iframe|<img|<object", page, re.IGNORECASE)
    assert not re.search(r"\bsrc\s*=", page)
    assert "Content-Security-Policy" in page and "default-src 'none'" in page


def test_page_is_self_contained_and_escaped():
    page = page_of([(HOSTILE, TEXT, KEYPHRASES), (7, "", [])])
    assert_self_contained(page)
    assert all(href.startswith("#") for href in re.findall(r'href="([^"]*)"', page))
    assert page.count("<script") == 1 and read_page(page).scripts == 1  # the page's own
    assert HOSTILE not in page and "&lt;script&gt;window.injected = 1&lt;/script&gt;" in page
    assert "&lt;/mark&gt;&lt;b&gt;x" in page and "Test &lt;page&gt;" in page


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


def numbered(count: int, first: int = 0):
    return [(f"d{number}", f"text {number}", [("text", 1.0, [[0, 4]])]) for number in range(first, first + count)]


def test_large_corpora_become_pages_and_an_index(tmp_path):
    path = tmp_path / "my page#1.html"
    write_html_page(path, numbered(5), title="Big <corpus>", documents_per_page=2)
    pages = [tmp_path / f"my page#1-{number}.html" for number in (1, 2, 3)]
    assert sorted(tmp_path.iterdir()) == sorted([path, *pages])
    index = path.read_text(encoding="utf-8")
    assert_self_contained(index)
    assert "<script" not in index and "Big &lt;corpus&gt;" in index and "5 documents in 3 pages of up to 2" in index
    assert re.findall(r'href="([^"]*)"', index) == [f"my%20page%231-{number}.html" for number in (1, 2, 3)]
    assert "documents 5–5" in index and "d2</span> … <span class=\"doc-id\">d3<" in index
    for number, page_path in enumerate(pages, start=1):
        page = page_path.read_text(encoding="utf-8")
        assert_self_contained(page)
        reader = read_page(page)
        assert reader.texts == [f"text {n}" for n in range(2 * number - 2, min(2 * number, 5))]
        ids = re.findall(r'<details class="doc" id="([^"]+)"', page)  # numbered across the corpus
        assert ids == [f"doc-{n}" for n in range(2 * number - 1, min(2 * number, 5) + 1)]
        links = re.findall(r'href="([^"#]+)"', page)
        neighbours = [f"my%20page%231-{n}.html" for n in (number - 1, number + 1) if 1 <= n <= 3]
        assert links == ["my%20page%231.html", *neighbours]


def test_pages_are_finished_as_the_next_starts(tmp_path):
    path = tmp_path / "k.html"
    with HtmlPageWriter(path, documents_per_page=2) as writer:
        for record in numbered(2):
            writer.add(*record)
        with pytest.raises(ValueError, match="not inside"):  # a bad document starts no page
            writer.add("bad", "x", [("x", 1.0, [[0, 5]])])
        assert sorted(p.name for p in tmp_path.iterdir()) == ["k.html"]
        writer.add(*numbered(1, first=2)[0])
        assert (tmp_path / "k-1.html").read_text(encoding="utf-8").endswith("</html>\n")
        assert not path.exists() and (tmp_path / "k-2.html").exists()
    assert path.exists()


def test_one_page_up_to_the_limit_and_on_streams(tmp_path):
    write_html_page(tmp_path / "k.html", numbered(3), documents_per_page=3)
    assert [p.name for p in tmp_path.iterdir()] == ["k.html"]
    assert "3 documents" in (tmp_path / "k.html").read_text(encoding="utf-8")
    out = io.StringIO()
    with HtmlPageWriter(out, documents_per_page=1) as writer:  # a stream cannot be split
        for record in numbered(3):
            writer.add(*record)
    assert len(read_page(out.getvalue()).texts) == 3
    with pytest.raises(ValueError, match="at least 1"):
        HtmlPageWriter(io.StringIO(), documents_per_page=0)


# ----------------------------------------------------------------------------- in a real browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed "
                                    "(apt-get install -y chromium) so the page is not rendered")
WINDOW = (1280, 900)

# Appended to a copy of the page by the tests only: where the browser put each thing, as JSON.
LAYOUT_PROBE = """<script>
(function(){
 function box(el){var r=el.getBoundingClientRect();return [r.left,r.top,r.width,r.height];}
 function all(root,selector){return [].slice.call(root.querySelectorAll(selector));}
 var report={injected:window.injected===1, indexed:all(document,'nav li a').length,
  tools:box(document.querySelector('.tools')),
  documents:all(document,'details.doc').map(function(doc){
   var pane=doc.querySelector('.text');
   return {id:doc.id, text:box(pane), list:box(doc.querySelector('.ranked')),
    scrolls:pane.scrollHeight>pane.clientHeight&&getComputedStyle(pane).overflowY==='auto',
    marks:all(pane,'mark.kp').map(function(m){return {occurrence:m.getAttribute('data-occurrence'),
     rank:+m.getAttribute('data-rank'), box:box(m), background:getComputedStyle(m).backgroundColor};})};})};
 var out=document.createElement('pre');out.id='layout-report';out.textContent=JSON.stringify(report);
 document.body.appendChild(out);
})();
</script></body>"""


def chromium(url: str, *arguments: str, scripts: bool = True, profiles: Path) -> subprocess.CompletedProcess:
    """Headless Chromium on a fresh profile; the timeout only guards against a hang."""
    profile = Path(tempfile.mkdtemp(prefix="chromium-", dir=profiles))
    if not scripts:
        # Blocked as a reader's setting would: with --blink-settings=scriptEnabled=false,
        # headless Chromium 156 writes neither the DOM nor a screenshot.
        (profile / "Default").mkdir()
        (profile / "Default" / "Preferences").write_text(
            json.dumps({"profile": {"default_content_setting_values": {"javascript": 2}}}))
    sandbox = ["--no-sandbox"] if os.geteuid() == 0 else []
    return subprocess.run([CHROMIUM, "--headless", *sandbox, "--disable-gpu", "--disable-dev-shm-usage",
                           "--hide-scrollbars", "--force-device-scale-factor=1", f"--user-data-dir={profile}",
                           f"--window-size={WINDOW[0]},{WINDOW[1]}", "--virtual-time-budget=1000", *arguments, url],
                          capture_output=True, text=True, timeout=120)


def dom(path: Path, profiles: Path) -> str:
    dumped = chromium(path.as_uri(), "--dump-dom", profiles=profiles)
    assert "</html>" in dumped.stdout, dumped.stderr[-2000:]
    return dumped.stdout


def layout(page: Path, profiles: Path) -> dict:
    probe = page.with_name(f"probe-{page.name}")
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", LAYOUT_PROBE), encoding="utf-8")
    match = re.search(r'<pre id="layout-report">(.*?)</pre>', dom(probe, profiles))
    assert match
    return json.loads(html.unescape(match.group(1)))


def screenshot(page: Path, profiles: Path, scripts: bool = True) -> np.ndarray:
    """The window's pixels, rows by columns by RGB."""
    image = Path(tempfile.mkdtemp(dir=profiles)) / "page.png"
    shot = chromium(page.as_uri(), f"--screenshot={image}", scripts=scripts, profiles=profiles)
    assert image.exists(), shot.stderr[-2000:]
    return decode_png(image.read_bytes())


def decode_png(data: bytes) -> np.ndarray:
    """An 8-bit RGB or RGBA PNG's RGB pixels (PNG's per-row filters undone)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, compressed = 8, b""
    while position < len(data):
        (length,) = struct.unpack(">I", data[position:position + 4])
        kind, body = data[position + 4:position + 8], data[position + 8:position + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and colour in (2, 6)
        elif kind == b"IDAT":
            compressed += body
        position += 12 + length
    size = 3 if colour == 2 else 4
    stride = width * size
    raw = zlib.decompress(compressed)
    rows = np.zeros((height + 1, stride), dtype=np.uint8)  # row 0: the zeros the first row is filtered against
    for y in range(height):
        start = y * (stride + 1)
        kind, line, up = raw[start], np.frombuffer(raw, np.uint8, stride, start + 1), rows[y]
        if kind == 0:
            rows[y + 1] = line
        elif kind == 1:
            rows[y + 1] = np.cumsum(line.reshape(width, size), axis=0, dtype=np.uint8).reshape(-1)
        elif kind == 2:
            rows[y + 1] = line + up
        else:
            rows[y + 1] = np.frombuffer(unfilter(kind, line.tobytes(), up.tobytes(), size), np.uint8)
    return rows[1:].reshape(height, width, size)[:, :, :3]


def unfilter(kind: int, line: bytes, up: bytes, size: int) -> bytes:
    """A row under PNG's Average (3) or Paeth (4) filter, which run left to right."""
    out = bytearray(line)
    for i in range(len(out)):
        left, corner = (out[i - size], up[i - size]) if i >= size else (0, 0)
        if kind == 3:
            out[i] = (out[i] + ((left + up[i]) >> 1)) & 255
        else:
            guess = left + up[i] - corner
            near = min((abs(guess - left), 0, left), (abs(guess - up[i]), 1, up[i]), (abs(guess - corner), 2, corner))
            out[i] = (out[i] + near[2]) & 255
    return bytes(out)


def highlight_colour(opacity: float) -> tuple[int, int, int]:
    """The page's highlight, rgb(255 170 0 / opacity), over the white of a document."""
    return tuple(round(255 + (channel - 255) * opacity) for channel in (255, 170, 0))


def dominant_colour(pixels: np.ndarray, box: list[float]) -> tuple[int, int, int]:
    left, top, width, height = (round(value) for value in box)
    region = pixels[top + 1:top + height - 1, left + 1:left + width - 1].reshape(-1, 3)
    colours, counts = np.unique(region, axis=0, return_counts=True)
    return tuple(int(value) for value in colours[counts.argmax()])


# Highlights at known places: three phrases, apart, ranked 1 to 3.
PLAIN = "Keyphrase extraction ranks candidate phrases of scientific abstracts for indexing."
PLAIN_PHRASES = ["Keyphrase extraction", "candidate phrases", "scientific abstracts"]
PLAIN_KEYPHRASES = [(phrase, 1.0 - rank / 10, occurrences(PLAIN, phrase)) for rank, phrase in enumerate(PLAIN_PHRASES)]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """A page of three documents as laid out, and its screenshots with and without scripts."""
    folder = tmp_path_factory.mktemp("rendered")
    long_text = "\n".join(f"Line {number}: graph models of neural networks." for number in range(200))
    records = [("plain", PLAIN, PLAIN_KEYPHRASES), ("doc", TEXT, KEYPHRASES),
               ("long", long_text, [("graph models", 1.0, occurrences(long_text, "graph models"))])]
    page = folder / "page.html"
    write_html_page(page, records)
    return {"page": page, "records": records, "layout": layout(page, folder),
            "scripts": screenshot(page, folder), "no scripts": screenshot(page, folder, scripts=False)}


@needs_chromium
def test_chromium_lays_out_every_highlight(rendered):
    report, records = rendered["layout"], rendered["records"]
    assert [document["id"] for document in report["documents"]] == ["doc-1", "doc-2", "doc-3"]
    assert report["indexed"] == 3 and not report["injected"]
    for document, (_, _, keyphrases) in zip(report["documents"], records):
        marks = document["marks"]
        expected = {f"{rank}-{number}" for rank, (_, _, spans) in enumerate(keyphrases, start=1)
                    for number in range(len(spans))}
        assert {mark["occurrence"] for mark in marks} == expected
        assert all(mark["box"][2] > 0 and mark["box"][3] > 0 for mark in marks)
        opacity = {mark["rank"]: float(re.findall(r"[\d.]+", mark["background"])[3]) for mark in marks}  # rgba()
        assert [opacity[rank] for rank in sorted(opacity)] == sorted(opacity.values(), reverse=True)
        assert min(opacity.values()) > 0
    assert report["documents"][2]["scrolls"]  # the long text scrolls in its pane


@needs_chromium
def test_highlighted_phrases_have_the_highlight_colour(rendered):
    pixels = rendered["scripts"]
    assert pixels.shape == (WINDOW[1], WINDOW[0], 3)
    marks = rendered["layout"]["documents"][0]["marks"]
    assert len(marks) == len(PLAIN_KEYPHRASES)
    for mark in marks:
        expected = highlight_colour(shade(mark["rank"], len(PLAIN_KEYPHRASES)))
        colour = dominant_colour(pixels, mark["box"])
        assert all(abs(a - b) <= 2 for a, b in zip(colour, expected)), (mark, colour, expected)


@needs_chromium
def test_without_scripts_the_reader_sees_the_same_page(rendered):
    report = rendered["layout"]
    for document in report["documents"][:2]:  # every text, highlight and list is inside the screenshot
        for left, top, width, height in [document["text"], document["list"], *(m["box"] for m in document["marks"])]:
            assert width > 0 and height > 0 and left + width <= WINDOW[0] and top + height <= WINDOW[1]
    changed = np.argwhere((rendered["scripts"] != rendered["no scripts"]).any(axis=2))
    assert len(changed)  # the controls that need a script are hidden, so scripts were off
    left, top, width, height = report["tools"]
    assert ((changed[:, 0] >= top - 1) & (changed[:, 0] <= top + height + 1)
            & (changed[:, 1] >= left - 1) & (changed[:, 1] <= left + width + 1)).all()


REAL_LOOKING = [
    ("A scalable approach to keyphrase extraction with transformer encoders. We rank candidate phrases from a "
     "pretrained transformer encoder against supervised baselines on scientific abstracts; keyphrase extraction "
     "gains from phrase pooling and from long documents.",
     ["keyphrase extraction", "transformer encoder", "scientific abstracts", "phrase pooling", "long documents"]),
    ("Graph-based ranking of candidate terms in news articles. A co-occurrence graph links the terms; random walks "
     "over the co-occurrence graph score each candidate term, and the news articles of the test set show that "
     "graph-based ranking finds the terms editors chose.",
     ["co-occurrence graph", "random walks", "news articles", "graph-based ranking", "candidate terms"]),
    ("Soil moisture retrieval from satellite radar. Synthetic aperture radar backscatter responds to soil moisture "
     "and to vegetation; a change detection method separates the two, and the soil moisture maps are validated "
     "against in situ stations.",
     ["soil moisture", "synthetic aperture radar", "change detection", "in situ stations", "vegetation"]),
]


def corpus(count: int):
    for number in range(count):
        text, phrases = REAL_LOOKING[number % len(REAL_LOOKING)]
        yield f"doc-{number}", text, [(phrase, 1.0 - rank / 10, occurrences(text.lower(), phrase))
                                      for rank, phrase in enumerate(phrases)]


@needs_chromium
def test_ten_thousand_documents_open_page_by_page(tmp_path):
    path = tmp_path / "corpus.html"
    write_html_page(path, corpus(10_000))
    pages = [tmp_path / f"corpus-{number}.html" for number in range(1, 11)]
    assert sorted(tmp_path.iterdir()) == sorted([path, *pages])
    assert all(page.stat().st_size < 4_000_000 for page in pages)  # one page of 10,000 would be 28 MB

    index = dom(path, tmp_path)
    assert re.findall(r'<a href="([^"]+)"', index) == [page.name for page in pages]
    last = dom(pages[-1], tmp_path)
    ids = re.findall(r'<details class="doc" id="doc-(\d+)"', last)
    assert len(ids) == DOCUMENTS_PER_PAGE and ids[0] == "9001" and 'href="corpus-9.html"' in last
    pixels = screenshot(pages[-1], tmp_path).reshape(-1, 3)
    best = highlight_colour(shade(1, 5))
    assert (np.abs(pixels.astype(int) - best).max(axis=1) <= 2).sum() > 1000  # the first documents' best phrases
