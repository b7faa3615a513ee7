"""URL filter: each drop reason, user lists, allow-list, documents without URL, offline tldextract."""

from __future__ import annotations

import pytest

from tokenmill.doc import Doc
from tokenmill.filters.url import UrlFilter, UrlFilterConfig
from tokenmill.stages.base import StageContext
from tokenmill.stages.filter import UrlFilterStage


@pytest.fixture(scope="module")
def full_filter() -> UrlFilter:
    """The shipped UT1 list (4.56M domains): loaded once for this module (~3 s)."""
    f = UrlFilter()
    f.setup()
    return f


def verdict(f: UrlFilter, url: str | None):
    return f.filter(Doc("d", url=url))


def test_ut1_domain_and_subdomain_blocked(full_filter):
    assert verdict(full_filter, "https://incezt.net/some/page") == (False, "blocklisted_domain")
    assert verdict(full_filter, "http://www.incezt.net/") == (False, "blocklisted_domain")
    # listed as a host under a public suffix (blogspot.in); any deeper host is blocked too
    assert verdict(full_filter, "https://lefildutemps-bis.blogspot.in/x") == (False, "blocklisted_domain")
    assert verdict(full_filter, "https://en.wikipedia.org/wiki/Zebra") is True
    assert verdict(full_filter, "https://www.bbc.co.uk/news") is True


def test_ut1_url_blocked(full_filter):
    url = ("http://0149614511.strimbat.fr/porno-anal-escort-granville-faire-sa-salope-baise-une-vache-video-"
           "gratuite-x-escort-girl-auxerre")  # an entry of the UT1 URL list
    assert verdict(full_filter, url) == (False, "blocklisted_url")


def test_word_rules():
    f = UrlFilter(UrlFilterConfig(use_blocklist=False))
    f.setup()
    assert verdict(f, "https://example.com/free-bukkake-videos") == (False, "banned_word_in_url")
    assert verdict(f, "https://example.com/BLOWJOB") == (False, "banned_word_in_url")  # case-insensitive
    assert verdict(f, "https://example.com/bitch-suck") == (False, "too_many_soft_banned_words_in_url")
    assert verdict(f, "https://example.com/suck-it-up") is True  # one soft word is not enough
    assert verdict(f, "https://example.com/ballgag-shop") == (False, "banned_subword_in_url")
    assert verdict(f, "https://example.com/essex/class-assignment") is True  # "sex"/"ass" inside words: fine


def test_malformed_url_does_not_crash():
    f = UrlFilter(UrlFilterConfig(use_blocklist=False))
    f.setup()
    assert verdict(f, "http://[broken/page") is True
    assert verdict(f, "http://[broken/bukkake") == (False, "banned_word_in_url")


def test_user_lists_and_allow_list(tmp_path):
    (tmp_path / "domains.txt").write_text("# my list\nbad.example\n\n")
    (tmp_path / "urls.txt").write_text("good.example/one-bad-page\n")
    (tmp_path / "allow.txt").write_text("trusted.example\n")
    cfg = UrlFilterConfig(
        use_blocklist=False,
        extra_domains=("worse.example",),
        extra_domain_files=(str(tmp_path / "domains.txt"),),
        extra_url_files=(str(tmp_path / "urls.txt"),),
        allow_domain_files=(str(tmp_path / "allow.txt"),),
    )
    f = UrlFilter(cfg)
    f.setup()
    assert verdict(f, "https://shop.bad.example/x") == (False, "blocklisted_domain")
    assert verdict(f, "https://worse.example") == (False, "blocklisted_domain")
    assert verdict(f, "https://www.good.example/one-bad-page/") == (False, "blocklisted_url")
    assert verdict(f, "https://good.example/other-page") is True
    assert verdict(f, "https://blog.trusted.example/blowjob") is True  # allowed domains are never dropped


def test_allow_list_beats_ut1(full_filter):
    f = UrlFilter(UrlFilterConfig(allow_domains=("incezt.net",)))
    f.tld, f.domains, f.urls = full_filter.tld, full_filter.domains, full_filter.urls  # reuse the loaded list
    f.banned_words, f.soft_banned_words, f.subwords = set(), set(), None
    f.allow, f._ready = {"incezt.net"}, True
    assert verdict(f, "https://incezt.net/") is True


def test_stage_keeps_documents_without_url_and_counts_them():
    stage = UrlFilterStage(UrlFilterConfig(use_blocklist=False))
    stage.setup()
    ctx = StageContext("url_filter")
    docs = [Doc("a", url=None, raw=b"<html>"), Doc("b", url="https://example.com/bukkake"),
            Doc("c", url="https://example.com/")]
    out = list(stage.run(iter(docs), ctx))
    assert [d.id for d in out] == ["a", "c"]
    assert ctx.stats.counters["no_url"] == 1 and ctx.stats.drops == {"banned_word_in_url": 1}
    assert ctx.removed[0][0].id == "b"


def test_tldextract_never_fetches(monkeypatch):
    import socket

    def no_network(*a, **k):
        raise AssertionError("url filter tried to use the network")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    f = UrlFilter(UrlFilterConfig(use_blocklist=False))
    f.setup()
    assert f._host_chain("https://a.b.example.co.uk/x") == ["a.b.example.co.uk", "b.example.co.uk", "example.co.uk"]


def test_config_validation():
    with pytest.raises(ValueError, match="soft_word_threshold"):
        UrlFilterConfig(soft_word_threshold=0)


def test_shared_warcs_through_the_filter_stages_every_document_accounted_for(shared_data, full_filter):
    """url_filter -> (extract) -> language -> quality -> pii on real WARCs: in = out + drops at every stage."""
    import trafilatura
    from warcio.archiveiterator import ArchiveIterator

    from tokenmill.stages.filter import LanguageStage, PiiStage, QualityStage

    docs = []
    for name in ("cc-main-2020-34-excerpt.warc.gz", "wget-crawl-2024-sample-0000.warc.gz"):
        with open(shared_data / "warc" / name, "rb") as f:
            for rec in ArchiveIterator(f):
                if rec.rec_type == "response":
                    url = rec.rec_headers.get_header("WARC-Target-URI").strip("<>")
                    docs.append(Doc(f"{name}:{len(docs)}", url=url, raw=rec.content_stream().read()))
    assert len(docs) == 38

    url_stage = UrlFilterStage()
    url_stage.filters = [full_filter]  # already set up: the 4.6M-domain list is loaded once per module
    stages = [LanguageStage(), QualityStage(), PiiStage()]
    for s in stages:
        s.setup()
    contexts = [StageContext(s.name) for s in [url_stage] + stages]

    def extract(stream):
        for d in stream:  # stand-in for the extract stage: text or an empty string
            d.text = trafilatura.extract(d.raw, url=d.url) or ""
            yield d

    stream = url_stage.run(iter(docs), contexts[0])
    stream = extract(stream)
    for s, ctx in zip(stages, contexts[1:]):
        stream = s.run(stream, ctx)
    out = list(stream)

    n_in = len(docs)
    for ctx in contexts:
        st = ctx.stats
        assert st.docs_in == n_in and st.docs_in == st.docs_out + sum(st.drops.values()), (st.stage, st)
        assert len(ctx.removed) == sum(st.drops.values())
        n_in = st.docs_out
    assert len(out) == contexts[-1].stats.docs_out
    # the excerpt is mostly Chinese: the default (English-only) language stage drops most of it
    assert contexts[1].stats.drops["language_not_kept"] >= 10
    assert all(d.language == "en" for d in out)


def test_editing_a_user_list_changes_the_stage_fingerprint(tmp_path):
    lst = tmp_path / "block.txt"
    lst.write_text("spam.example\n")
    cfg = UrlFilterConfig(extra_domain_files=(str(lst),))
    before = UrlFilterStage(cfg).fingerprint()
    lst.write_text("spam.example\nmore-spam.example\n")
    assert UrlFilterStage(cfg).fingerprint() != before
