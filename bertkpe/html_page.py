"""Self-contained HTML pages of documents with their keyphrases highlighted in place.

    with HtmlPageWriter("keyphrases.html") as page:
        for doc_id, text in documents:
            page.add(doc_id, text, kx.extract(text, top_k=10, offsets=True))

Each document is a collapsible section: its text in a scrollable pane, every occurrence
of a keyphrase highlighted (darker for better ranks, the rank as a small label), and
beside it the ranked list (phrase, score, occurrences) whose entries jump to the first
occurrence; hovering a phrase or a highlight lights all of that phrase's occurrences. A
document index sits on the left. Documents are written as they are added, so a
streaming extraction can feed the page without holding the corpus; the index follows
at `close()`.

A browser lays out and styles every element of a page before it is usable, so one page
per corpus stops opening at some size (10,000 abstracts: 28 MB, 70 s in headless
Chromium). Sections off screen are skipped until scrolled to (`content-visibility`), and
written to a path, a corpus of more than `documents_per_page` documents becomes pages
`STEM-1.html`, `STEM-2.html`, ... beside it, each finished as the next one starts, and
the path itself becomes the index of those pages at `close()`.

Without scripts the page shows the same text, highlights and lists, and hides only the
controls that need a script. Documents are untrusted: every piece of text is escaped,
ids of elements are made here (never from document ids), and the page loads nothing:
CSS and JS are inline and a Content-Security-Policy forbids any other source.
"""
from __future__ import annotations

import html
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence, TextIO
from urllib.parse import quote

Offsets = Sequence[Sequence[int]]  # [start, end] of each occurrence, Python str indices of the text

# Opacity of the last- and first-ranked phrase's highlight; translucent, so that where
# occurrences nest, the overlap is darker and each one's extent stays visible.
FAINTEST, STRONGEST = 0.15, 0.75

# Documents of one page, when written to a path: 1,000 abstracts are about 3 MB, open in
# about 2 s; of long documents (papers), pass fewer.
DOCUMENTS_PER_PAGE = 1000

_STYLE = """
*{box-sizing:border-box}
html{scroll-padding-top:3rem}
body{margin:0;font:15px/1.55 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1d1d1f;background:#f4f4f1;
 display:grid;grid-template-columns:minmax(12rem,17rem) 1fr}
header{grid-column:2;position:relative;padding:1rem 15rem .5rem 1.5rem}
header h1{font-size:1.3rem;margin:0 0 .3rem}
header p{margin:.2rem 0;color:#555}
.tools{position:absolute;top:1rem;right:1.5rem;width:13rem;text-align:right;font-size:.8rem}
.tools button{font:inherit;margin-left:.4rem;padding:.1rem .6rem}
.legend mark{padding:0 .4rem}
main{grid-column:2;padding:0 1.5rem 40vh;min-width:0}
nav{grid-column:1;grid-row:1/span 2;position:sticky;top:0;height:100vh;overflow:auto;background:#e9e9e4;
 border-right:1px solid #d3d3cc;padding:.8rem .6rem;font-size:.85rem}
nav h2{font-size:.8rem;text-transform:uppercase;letter-spacing:.05em;color:#666;margin:0 0 .4rem}
nav ol{margin:0}
nav li{margin:.15rem 0}
nav a{color:#1d1d1f;text-decoration:none;overflow-wrap:anywhere}
nav a:hover{text-decoration:underline}
nav .top{color:#777}
nav .pages{display:flex;flex-wrap:wrap;gap:.2rem .8rem;margin:0 0 .8rem}
body.index{display:block}
.index header{padding-right:1.5rem}
.index main{padding-bottom:2rem}
.page-list li{margin:.3rem 0}
.page-list .meta{color:#777;margin:0 .6rem}
details.doc{content-visibility:auto;contain-intrinsic-size:auto 24rem;background:#fff;border:1px solid #d8d8d2;
 border-radius:6px;margin:0 0 1rem}
details.doc>summary{cursor:pointer;padding:.5rem .9rem;font-weight:600;border-bottom:1px solid #eee}
details.doc>summary .meta{font-weight:400;color:#777;font-size:.85rem;margin-left:.6rem}
.panes{display:grid;grid-template-columns:minmax(0,1fr) minmax(14rem,22rem)}
.text{margin:0;padding:.8rem 1rem;max-height:65vh;overflow:auto;white-space:pre-wrap;overflow-wrap:anywhere;
 font:inherit;border-right:1px solid #eee}
.ranked{margin:0;padding:.6rem .8rem .6rem 2.6rem;max-height:65vh;overflow:auto;font-size:.9rem}
.ranked li{margin:.2rem 0;padding:0 .2rem;border-radius:3px}
.ranked a{color:inherit;text-decoration:none}
.ranked a:hover{text-decoration:underline}
.ranked .swatch{display:inline-block;width:.8em;height:.8em;border-radius:2px;margin-right:.4em;
 background:rgb(255 170 0 / var(--shade));border:1px solid #0002;vertical-align:-.05em}
.ranked .score{color:#666;font-variant-numeric:tabular-nums;margin-left:.4em}
.ranked .count{color:#999;font-size:.8rem;margin-left:.3em}
mark.kp{background:rgb(255 170 0 / var(--shade));color:inherit;border-radius:2px;
 box-shadow:inset 0 -1px rgb(150 100 0 / .45);padding:0 1px}
mark.kp mark.kp{padding:0}
mark.kp:target{outline:2px solid #d33;outline-offset:1px}
.rank{font-size:.62em;color:#8a6d00;vertical-align:.55em;line-height:0;margin-left:1px;user-select:none}
.rank::after{content:attr(data-rank)}
.hot mark.kp.lit,.ranked li.lit{outline:2px solid #1a73e8;outline-offset:0}
.empty{color:#888;font-style:italic;padding:.8rem 1rem}
@media (max-width:900px){body{display:block}nav{position:static;height:auto;max-height:30vh}
 .panes{grid-template-columns:1fr}}
"""

# Hovering a phrase in the list or a highlight outlines that phrase's every occurrence in its document.
_SCRIPT = """
(function(){
 function light(target,on){
  var holder=target.closest('[data-rank]');
  var doc=target.closest('details.doc');
  if(!holder||!doc)return;
  var rank=holder.getAttribute('data-rank');
  doc.classList.toggle('hot',on);
  doc.querySelectorAll('[data-rank="'+rank+'"]').forEach(function(el){el.classList.toggle('lit',on);});
 }
 document.addEventListener('mouseover',function(e){light(e.target,true);});
 document.addEventListener('mouseout',function(e){light(e.target,false);});
 function all(open){document.querySelectorAll('details.doc').forEach(function(d){d.open=open;});}
 document.getElementById('expand-all').addEventListener('click',function(){all(true);});
 document.getElementById('collapse-all').addEventListener('click',function(){all(false);});
})();
"""

_POLICY = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'"


def _escape(text: str) -> str:
    """HTML-escaped text; a carriage return as a reference, which the parser keeps (it turns a raw one into \\n)."""
    return html.escape(text, quote=True).replace("\r", "&#13;")


def shade(rank: int, count: int) -> float:
    """Highlight opacity of the phrase ranked `rank` (1-based) of `count`: the best is darkest."""
    if count <= 1:
        return STRONGEST
    return round(STRONGEST - (STRONGEST - FAINTEST) * (rank - 1) / (count - 1), 3)


@dataclass(frozen=True)
class _Occurrence:
    start: int
    end: int
    rank: int
    number: int  # 0-based, in text order among the phrase's occurrences


Entry = tuple[str, float, list[list[int]]]  # phrase, score, offsets in text order


def check_keyphrases(text: str, keyphrases: Sequence[Sequence[Any]]) -> list[Entry]:
    """(phrase, score, offsets) entries with offsets in text order; a ValueError for offsets outside the text."""
    checked = []
    for index, entry in enumerate(keyphrases):
        if len(entry) != 3:
            raise ValueError(f"keyphrase {index}: expected (phrase, score, offsets), got {len(entry)} fields; "
                             f"extract with offsets=True")
        phrase, score, offsets = entry
        spans = []
        for span in offsets:
            start, end = (int(value) for value in span)
            if not 0 <= start < end <= len(text):
                raise ValueError(f"keyphrase {index} ({phrase!r}): offsets [{start}, {end}] are not inside "
                                 f"the text of {len(text)} characters")
            spans.append([start, end])
        checked.append((str(phrase), float(score), sorted(spans)))
    return checked


def highlight(text: str, entries: Sequence[Entry], anchor: str) -> str:
    """The escaped text with each occurrence of the checked entries (`check_keyphrases`) in
    `<mark>` elements, nested where occurrences nest.

    An occurrence that crosses another's edge is split into fragments so the markup stays
    well formed; every fragment carries its occurrence (`data-occurrence="RANK-NUMBER"`)
    and rank, the first one the element id `{anchor}-k{RANK}-o{NUMBER}`.
    """
    occurrences = [_Occurrence(start, end, rank, number)
                   for rank, (_, _, spans) in enumerate(entries, start=1)
                   for number, (start, end) in enumerate(spans)]
    titles = {rank: _escape(f"#{rank} {phrase} ({score:.4g})") for rank, (phrase, score, _) in enumerate(entries, 1)}

    def opening(occurrence: _Occurrence, first: bool) -> str:
        rank = occurrence.rank
        element_id = f' id="{anchor}-k{rank}-o{occurrence.number}"' if first else ""
        return (f'<mark class="kp"{element_id} data-rank="{rank}" data-occurrence="{rank}-{occurrence.number}" '
                f'style="--shade:{shade(rank, len(entries))}" title="{titles[rank]}">')

    starting: dict[int, list[_Occurrence]] = {}
    ending: dict[int, list[_Occurrence]] = {}
    for occurrence in occurrences:
        starting.setdefault(occurrence.start, []).append(occurrence)
        ending.setdefault(occurrence.end, []).append(occurrence)
    parts: list[str] = []
    stack: list[_Occurrence] = []
    position = 0
    for boundary in sorted(set(starting) | set(ending)):
        parts.append(_escape(text[position:boundary]))
        position = boundary
        closing = ending.get(boundary, [])
        if closing:
            reopen = []
            while any(occurrence in stack for occurrence in closing):
                top = stack.pop()
                parts.append("</mark>")
                if top in closing:
                    parts.append(f'<span class="rank" data-rank="{top.rank}"></span>')
                else:
                    reopen.append(top)
            for occurrence in reversed(reopen):
                parts.append(opening(occurrence, first=False))
                stack.append(occurrence)
        # Longer occurrences open first so that shorter ones starting here nest inside them.
        for occurrence in sorted(starting.get(boundary, []), key=lambda o: (-o.end, o.rank)):
            parts.append(opening(occurrence, first=True))
            stack.append(occurrence)
    parts.append(_escape(text[position:]))
    return "".join(parts)


def render_document(number: int, doc_id: Any, text: str, keyphrases: Sequence[Sequence[Any]]) -> str:
    """The HTML section of one document (`number` makes its element ids unique in the page)."""
    anchor = f"doc-{number}"
    entries = check_keyphrases(text, keyphrases)
    items = []
    for rank, (phrase, score, spans) in enumerate(entries, start=1):
        label = f'<span class="swatch" style="--shade:{shade(rank, len(entries))}"></span>{_escape(phrase)}'
        if spans:
            label = f'<a href="#{anchor}-k{rank}-o0">{label}</a>'
        count = f'<span class="count">{len(spans)}×</span>'
        items.append(f'<li data-rank="{rank}">{label}<span class="score">{score:.4g}</span>{count}</li>')
    ranked = (f'<ol class="ranked">{"".join(items)}</ol>' if items
              else '<div class="ranked empty">no keyphrases</div>')
    body = highlight(text, entries, anchor)
    plural = "" if len(entries) == 1 else "s"
    return (f'<details class="doc" id="{anchor}" open><summary><span class="doc-id">{_escape(str(doc_id))}</span>'
            f'<span class="meta">{len(entries)} keyphrase{plural} · {len(text)} characters</span></summary>'
            f'<div class="panes"><div class="text" tabindex="0">{body}</div>{ranked}</div></details>\n')


def _head(title: str, body_class: str = "") -> str:
    """Everything up to `<body>`; without scripts, the controls that need one are hidden."""
    body = f' class="{body_class}"' if body_class else ""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{_POLICY}">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f'<title>{_escape(title)}</title><style>{_STYLE}</style>'
            f'<noscript><style>.needs-script{{display:none}}</style></noscript></head><body{body}>\n')


def _page_header(title: str) -> str:
    """The heading, the legend and the controls (placed out of the flow, so that hiding them moves nothing)."""
    return (f'<header><h1>{_escape(title)}</h1>'
            f'<p class="legend">Highlights are shaded by rank: <mark class="kp" style="--shade:{STRONGEST}">best</mark> '
            f'… <mark class="kp" style="--shade:{FAINTEST}">last</mark>; the small number is the rank. '
            f'Click a phrase to jump to its first occurrence.</p>'
            f'<div class="tools needs-script"><button type="button" id="expand-all">Expand all</button>'
            f'<button type="button" id="collapse-all">Collapse all</button>'
            f'<p>Hover a phrase to outline all its occurrences.</p></div></header>\n<main>\n')


def _href(path: Path) -> str:
    """A link to a sibling file of the page."""
    return _escape(quote(path.name))


@dataclass
class _Page:
    number: int
    first: int  # number of its first document in the corpus
    first_id: str = ""
    last_id: str = ""
    documents: int = 0


class HtmlPageWriter:
    """Writes the page to a path or an open text stream, one document per `add()`.

    Written to a path, more than `documents_per_page` documents (None: no limit) are split
    into pages of that many beside it, and the path becomes their index; a stream gets one
    page. Use as a context manager, or call `close()`: each page's index and script come last.
    """

    def __init__(self, out: str | os.PathLike | TextIO, title: str = "Keyphrases",
                 documents_per_page: int | None = DOCUMENTS_PER_PAGE):
        if documents_per_page is not None and documents_per_page < 1:
            raise ValueError(f"documents_per_page must be at least 1 (or None), got {documents_per_page}")
        self._path = None if hasattr(out, "write") else Path(os.fspath(out))
        self._out: TextIO = self._open(self._path) if self._path is not None else out
        self._title = title
        self._per_page = documents_per_page if self._path is not None else None
        self._page = _Page(number=1, first=1)
        self._finished: list[_Page] = []  # every page before the current one, for the index
        self._index: list[str] = []  # the current page's entries
        self._closed = False
        self._out.write(_head(title) + _page_header(title))

    @staticmethod
    def _open(path: Path) -> TextIO:
        return open(path, "w", encoding="utf-8", errors="replace")

    def _page_path(self, number: int) -> Path:
        assert self._path is not None
        return self._path.with_name(f"{self._path.stem}-{number}{self._path.suffix}")

    def add(self, doc_id: Any, text: str, keyphrases: Sequence[Sequence[Any]]) -> None:
        """Append one document; `keyphrases` are (phrase, score, [[start, end], ...]) entries, best first."""
        if self._closed:
            raise ValueError("the page is closed")
        number = self._page.first + self._page.documents
        section = render_document(number, doc_id, text, keyphrases)
        if self._page.documents == self._per_page:
            self._next_page()
        page = self._page
        self._out.write(section)
        if not page.documents:
            page.first_id = str(doc_id)
        page.last_id = str(doc_id)
        page.documents += 1
        top = f' <span class="top">{_escape(str(keyphrases[0][0]))}</span>' if keyphrases else ""
        self._index.append(f'<li><a href="#doc-{number}">{_escape(str(doc_id))}</a>{top}</li>')

    def _next_page(self) -> None:
        """Finish the current page and start the next; the first one moves from the path to `STEM-1`."""
        assert self._path is not None
        finished = self._page
        self._finish_page(has_next=True)
        self._out.close()
        if finished.number == 1:
            os.replace(self._path, self._page_path(1))
        self._finished.append(finished)
        self._page = _Page(number=finished.number + 1, first=finished.first + finished.documents)
        self._index = []
        self._out = self._open(self._page_path(self._page.number))
        heading = f"{self._title} — page {self._page.number}"
        self._out.write(_head(heading) + _page_header(heading))

    def _finish_page(self, has_next: bool) -> None:
        page = self._page
        if self._path is not None and (self._finished or has_next):
            links = [f'<a href="{_href(self._path)}">All pages</a>']
            if page.number > 1:
                links.append(f'<a href="{_href(self._page_path(page.number - 1))}">← page {page.number - 1}</a>')
            if has_next:
                links.append(f'<a href="{_href(self._page_path(page.number + 1))}">page {page.number + 1} →</a>')
            heading = (f'<p class="pages">{"".join(links)}</p><h2>Page {page.number}: documents '
                       f'{page.first:,}–{page.first + page.documents - 1:,}</h2>')
        else:
            heading = f'<h2>{page.documents} document{"" if page.documents == 1 else "s"}</h2>'
        room = len(str(page.first + page.documents - 1)) * .6 + 1  # for the list's numbers, up to 7 digits
        self._out.write(f'</main>\n<nav>{heading}<ol start="{page.first}" style="padding-left:{room:.1f}em">'
                        f'{"".join(self._index)}</ol></nav>\n<script>{_SCRIPT}</script></body></html>\n')

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._finish_page(has_next=False)
        if self._path is None:
            self._out.flush()
            return
        self._out.close()
        if self._finished:
            self._finished.append(self._page)
            self._write_index(self._path)

    def _write_index(self, path: Path) -> None:
        """The page of links to every page, with the range of documents each holds."""
        pages, documents = self._finished, sum(page.documents for page in self._finished)
        items = "".join(
            f'<li><a href="{_href(self._page_path(page.number))}">Page {page.number}</a>'
            f'<span class="meta">documents {page.first:,}–{page.first + page.documents - 1:,}</span>'
            f'<span class="doc-id">{_escape(page.first_id)}</span> … '
            f'<span class="doc-id">{_escape(page.last_id)}</span></li>' for page in pages)
        with self._open(path) as out:
            out.write(f'{_head(self._title, "index")}<header><h1>{_escape(self._title)}</h1>'
                      f'<p>{documents:,} documents in {len(pages)} pages of up to {self._per_page:,}.</p></header>\n'
                      f'<main><ol class="page-list">{items}</ol></main></body></html>\n')

    def __enter__(self) -> "HtmlPageWriter":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def write_html_page(path: str | os.PathLike, records: Iterable[tuple[Any, str, Sequence[Sequence[Any]]]],
                    title: str = "Keyphrases", documents_per_page: int | None = DOCUMENTS_PER_PAGE) -> None:
    """The page (or pages and their index) of (id, text, keyphrases with offsets) records, in order."""
    with HtmlPageWriter(path, title, documents_per_page) as page:
        for doc_id, text, keyphrases in records:
            page.add(doc_id, text, keyphrases)
