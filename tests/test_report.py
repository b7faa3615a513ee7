"""RUN/report.html: written at the end of a run, self-contained, every chart there with data,
crawled strings escaped, and rendered by a real headless browser (Debian's chromium)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from types import SimpleNamespace

import pytest

from seeing_run import small_run
from tokenmill import cli
from tokenmill.manifests import charts
from tokenmill.manifests.report import collect, write_report
from tokenmill.manifests.report_html import render

CHARTS = ["funnel", "drops", "languages", "lengths", "scores", "clusters", "pii", "tokens", "time"]
NAMED_SCORES = ["score:fineweb.line_punct_ratio", "score:gopher_quality.mean_word_length", "score:language_score"]


def _figures(page: str) -> dict[str, int]:
    return {m.group(1): int(m.group(2)) for m in re.finditer(r'data-chart="([^"]+)" data-points="(\d+)"', page)}


def test_the_run_writes_its_report_and_every_chart_has_data():
    page = (small_run() / "report.html").read_text(encoding="utf-8")
    figs = _figures(page)
    for name in CHARTS + NAMED_SCORES:
        assert figs.get(name, 0) > 0, f"chart {name} missing or empty; charts: {figs}"
    # the thresholds are drawn: a red line on each named score chart
    for name in NAMED_SCORES:
        fig = page[page.index(f'data-chart="{name}"'):]
        fig = fig[:fig.index("</figure>")]
        assert 'class="threshold"' in fig, f"{name}: no threshold drawn"
    assert "drop if &lt; 0.12" in page  # fineweb.line_punct_ratio's threshold, as configured
    assert len(page.encode()) < 2_000_000


def test_report_is_self_contained_and_escapes_crawled_text():
    page = (small_run() / "report.html").read_text(encoding="utf-8")
    assert "<script" not in page.lower(), "no script at all: the page must open anywhere"
    assert not re.search(r'(src|href)="(https?:)?//', page), "nothing loaded from the network"
    assert "@import" not in page and "url(" not in page
    assert "alert(1)" in page, "the hostile URL is shown as an example of what url_filter dropped"
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page
    assert "\x1b" not in page
    for svg in re.findall(r"<svg.*?</svg>", page, flags=re.S):
        ET.fromstring(svg)  # every chart is well-formed XML


def test_report_counts_match_the_manifests():
    d = collect(str(small_run()))
    table = {r["stage"]: r for r in d["table"]}
    assert dict(d["funnel"])["quality"] == table["quality"]["docs_out"]
    assert sum(v.get("dropped", 0) for v in d["languages"].values()) == table["language"]["dropped"]
    dropped_q = sum(sum(c) for name, c in d["lengths"]["series"] if name.startswith("dropped"))
    assert dropped_q == table["quality"]["dropped"]
    lp = next(c for c in d["scores"] if c["score"] == "fineweb.line_punct_ratio")
    assert lp["thresholds"][0][0] == 0.12
    assert d["clusters"] and d["pii"] and {t["split"] for t in d["tokens"]} == {"train", "val"}


def test_report_can_be_switched_off(tmp_path):
    cfg = SimpleNamespace(executor=SimpleNamespace(report=False), output=str(tmp_path))
    cli._write_report(cfg)
    assert not (tmp_path / "report.html").exists()


def test_report_command(tmp_path, capsys):
    out = tmp_path / "r.html"
    assert cli.main(["report", str(small_run()), "--out", str(out)]) == 0
    assert out.stat().st_size > 10_000 and str(out) in capsys.readouterr().out
    assert cli.main(["report", str(tmp_path / "nothing")]) == 2


def test_chart_helpers_escape_labels():
    svg = charts.hbars([{"label": "<b>x</b>&", "segments": [("a", 3)]}], "t<")
    ET.fromstring(svg)
    assert "<b>" not in svg
    hist = charts.histogram([0, 1, 2], [("k", [1, 2])], "h", thresholds=[(5.0, "drop if > 5")], overflow=True)
    assert "drop if &gt; 5 →" in hist  # off the axis: named at its edge
    assert charts.num(12345) == "12,345" and charts.num(0.123456) == "0.123"


def test_render_without_optional_parts():
    d = collect(str(small_run()))
    d.update(tokens=[], clusters=[], pii={}, scores=[], languages={}, lengths=None,
             failures=[{"task_id": f"s00-{i:05d}", "inputs": ["x.warc.gz"], "error": "<b>boom</b>"} for i in range(60)])
    page = render(d)
    figs = _figures(page)
    assert figs["tokens"] == 0 and figs["clusters"] == 0 and figs["funnel"] > 0
    assert "and 10 more" in page and "<b>boom" not in page and "&lt;b&gt;boom" in page


CHECK = """<script>
const out = [...document.querySelectorAll('figure.chart')].map(f => {
  const w = [...f.querySelectorAll('svg')].reduce((m, s) => Math.max(m, s.getBBox().width), 0);
  return f.dataset.chart + ':' + f.dataset.points + ':' + Math.round(w) + ':' + f.querySelectorAll('rect').length;
});
document.body.setAttribute('data-check', out.join('|'));
</script>"""


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        msg = "Debian's chromium is not installed (apt-get install -y chromium); .ci/run installs it"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(msg)
        pytest.skip(msg)
    return exe


def _browser(exe: str, profile, *args) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0"]
    return subprocess.run([exe, *flags, *args], capture_output=True, text=True, timeout=120)


def test_report_renders_in_a_headless_browser(tmp_path):
    exe = _chromium()
    page = (small_run() / "report.html").read_text(encoding="utf-8")
    checked = tmp_path / "checked.html"
    checked.write_text(page.replace("</body>", CHECK + "</body>"), encoding="utf-8")
    dom = _browser(exe, tmp_path / "p1", "--dump-dom", checked.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "Uncaught" not in dom.stderr and "CONSOLE" not in dom.stderr, dom.stderr[-2000:]
    m = re.search(r'data-check="([^"]*)"', dom.stdout)
    assert m, "the page did not run to its end in the browser"
    seen = {}
    for item in m.group(1).split("|"):
        name, points, width, rects = item.rsplit(":", 3)
        seen[name] = (int(points), int(width), int(rects))
    for name in CHARTS + NAMED_SCORES:
        points, width, rects = seen[name]
        assert points > 0 and width > 100, f"{name}: not drawn ({seen[name]})"
        if name not in ("drops", "scores"):  # containers of other charts
            assert rects > 0, f"{name}: no bars"
    shot = tmp_path / "report.png"
    res = _browser(exe, tmp_path / "p2", "--window-size=1280,2400", f"--screenshot={shot}", (small_run() / "report.html").as_uri())
    assert res.returncode == 0 and shot.stat().st_size > 50_000, res.stderr[-2000:]


def test_many_cluster_sizes_are_bucketed():
    from tokenmill.manifests.report_html import _dedup

    page = _dedup({"clusters": [(i, 3) for i in range(2, 200)], "duplicates": {}})
    assert 'data-points="8"' in page and "129-256: clusters" in page and "3-4: clusters 6" in page


def test_report_says_when_it_sampled_or_saw_no_removed_documents():
    d = collect(str(small_run()), max_parts=1, max_docs=5)
    docs = next(s for s in d["sampled"] if s[0] == "docs")
    assert docs[1:4] == (1, 2, 5) and docs[4] > 5  # one part of two read, five of its documents kept
    assert sum(sum(c) for _, c in d["lengths"]["series"]) <= 5 * len(d["stages"])
    d["config"]["executor"]["keep_removed"] = False
    page = render(d)
    assert f"docs 5 of {docs[4]} documents in 1 of 2 parts" in page and "executor.keep_removed is false" in page


def test_report_of_a_run_without_filters():
    from seeing_run import jsonl_run

    figs = _figures((jsonl_run() / "report.html").read_text(encoding="utf-8"))
    assert figs["funnel"] > 0 and figs["pii"] == 1 and figs["lengths"] == 22 and figs["languages"] == 2
    assert figs["scores"] == 0 and figs["tokens"] == 0 and figs["clusters"] == 0
