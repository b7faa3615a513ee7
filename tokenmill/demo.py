"""The demo: a small, realistic crawl generated as a real WARC file, then the default recipe on it.

The crawl (seeded, ~80 responses, ~0.5 MB) has pages in five languages wrapped in navigation
and footer boilerplate, near-copies of some articles, spam-like pages, pages on adult-list
domains, e-mail addresses and phone numbers in text, plus the request/metadata records, a
404 and an image that a real Common Crawl file has. Nothing is downloaded.
"""

from __future__ import annotations

import html
import io
import random
import uuid
from datetime import datetime, timedelta, timezone

from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from tokenmill import storage
from tokenmill.demo_corpus import FOOTER, NAV, PII_LINES, SENTENCES, SPAM

ADULT_DOMAINS = ["pornhub.com", "xvideos.com"]  # both on the UT1 adult list


def _page(title: str, paragraphs: list[str], lang: str) -> str:
    nav = "".join(f'<li><a href="/{i}">{html.escape(n)}</a></li>' for i, n in enumerate(NAV.get(lang, NAV["en"])))
    body = "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)
    return (
        f'<!DOCTYPE html><html lang="{lang}"><head><meta charset="utf-8"><title>{html.escape(title)}</title></head>'
        f"<body><header><nav><ul>{nav}</ul></nav></header>"
        f"<main><article><h1>{html.escape(title)}</h1>{body}</article></main>"
        f'<aside><h3>Related</h3><ul><li><a href="/r1">More stories</a></li></ul></aside>'
        f"<footer><p>{html.escape(FOOTER)}</p></footer></body></html>"
    )


def _article(rng: random.Random, lang: str, n_paragraphs: int) -> list[str]:
    """Paragraphs of distinct sentences (no sentence twice in one page, as in a real article)."""
    pool = SENTENCES[lang]
    picked = rng.sample(pool, k=min(len(pool), 3 * n_paragraphs))
    size = -(-len(picked) // n_paragraphs)
    sep = "" if lang == "zh" else " "
    return [sep.join(picked[i:i + size]) for i in range(0, len(picked), size)]


def _title(rng: random.Random, lang: str) -> str:
    """A short headline: the start of some sentence of that language."""
    words = rng.choice(SENTENCES[lang])
    return words[:9] if lang == "zh" else " ".join(words.split()[:5])


def generate_pages(seed: int = 0, n_articles: int = 60) -> list[dict]:
    """Page specs: url, html (str) or body (bytes), status, content type."""
    rng = random.Random(seed)
    pages: list[dict] = []
    langs = ["en"] * 4 + ["de", "de", "fr", "es", "zh"]
    for i in range(n_articles):
        lang = rng.choice(langs)
        paras = _article(rng, lang, rng.randint(2, 4))
        if i % 7 == 0:
            paras.append(rng.choice(PII_LINES))
        site = {"en": "dailynews.example.com", "de": "zeitung.example.de", "fr": "journal.example.fr",
                "es": "diario.example.es", "zh": "news.example.cn"}[lang]
        url = f"https://{site}/{2024}/{i:03d}/story-{i}"
        title = _title(rng, lang)
        pages.append({"url": url, "html": _page(title, paras, lang)})
        if i % 10 == 3:  # a near-copy: one sentence changed, syndicated on another site
            copy = list(paras)
            copy[-1] = copy[-1] + " " + rng.choice(SENTENCES[lang])
            pages.append({"url": f"https://mirror.example.net/{i:03d}", "html": _page(title, copy, lang)})
    for i in range(6):  # spam-like pages
        words = " ".join(rng.choice(SPAM) for _ in range(30))
        pages.append({"url": f"http://best-deals-{i}.example.biz/offer", "html": _page("BEST DEALS", [words] * 3, "en")})
    for i, domain in enumerate(ADULT_DOMAINS):
        pages.append({"url": f"https://www.{domain}/video/{i}", "html": _page("video", _article(rng, "en", 3), "en")})
    pages.append({"url": "https://dailynews.example.com/missing", "html": "<html><body>Not found</body></html>", "status": 404})
    pages.append({"url": "https://dailynews.example.com/logo.png", "body": b"\x89PNG\r\n\x1a\n" + bytes(200),
                  "content_type": "image/png"})
    pages.append({"url": "https://dailynews.example.com/menu", "html": _page("Menu", [], "en")})  # no main text
    rng.shuffle(pages)
    return pages


def write_warc(path: str, seed: int = 0, n_articles: int = 60) -> int:
    """Write the demo crawl to `path` (.warc.gz, one gzip member per record). Returns responses written."""
    pages = generate_pages(seed, n_articles)
    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=True)
    date = datetime(2024, 5, 18, tzinfo=timezone.utc)
    rng = random.Random(seed + 1)
    info = writer.create_warcinfo_record("demo.warc.gz", {"software": "tokenmill demo", "format": "WARC/1.1"})
    info.rec_headers.replace_header("WARC-Date", date.strftime("%Y-%m-%dT%H:%M:%SZ"))  # same bytes every time
    info.rec_headers.replace_header("WARC-Record-ID", f"<urn:uuid:{uuid.UUID(int=random.Random(-seed - 1).getrandbits(128))}>")
    writer.write_record(info)
    for i, page in enumerate(pages):
        when = (date + timedelta(seconds=37 * i)).strftime("%Y-%m-%dT%H:%M:%SZ")
        rid = lambda: f"<urn:uuid:{uuid.UUID(int=rng.getrandbits(128))}>"  # noqa: E731 (seeded ids)
        req = StatusAndHeaders("GET / HTTP/1.1", [("Host", page["url"].split("/")[2])], is_http_request=True)
        writer.write_record(writer.create_warc_record(page["url"], "request", http_headers=req,
                                                      warc_headers_dict={"WARC-Date": when, "WARC-Record-ID": rid()}))
        body = page["html"].encode("utf-8") if "html" in page else page["body"]
        status = page.get("status", 200)
        ctype = page.get("content_type", "text/html; charset=utf-8")
        http = StatusAndHeaders(f"{status} {'OK' if status == 200 else 'Not Found'}",
                                [("Content-Type", ctype), ("Content-Length", str(len(body)))], protocol="HTTP/1.1")
        writer.write_record(writer.create_warc_record(page["url"], "response", payload=io.BytesIO(body), http_headers=http,
                                                      warc_headers_dict={"WARC-Date": when, "WARC-Record-ID": rid()}))
        meta = io.BytesIO(b"fetchTimeMs: 120\r\n")
        writer.write_record(writer.create_warc_record(page["url"], "metadata", payload=meta,
                                                      warc_content_type="application/warc-fields",
                                                      warc_headers_dict={"WARC-Date": when, "WARC-Record-ID": rid()}))
    with storage.atomic_write(path) as f:
        f.write(buf.getvalue())
    return len(pages)


def demo_config(crawl_dir: str, out: str, executor: str = "ray", workers: int | None = None) -> dict:
    return {
        "input": {"paths": [storage.join(crawl_dir, "*.warc.gz")]},
        "output": out,
        "executor": {"kind": executor, "workers": workers},
        "language": {"languages": ["en", "de", "fr", "es", "zh"]},
        "tokenize": {"vocab_size": 4096, "val_fraction": 0.05, "val_min_documents": 5},
    }
