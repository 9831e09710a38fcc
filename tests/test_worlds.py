"""Prompt sets, templates and propositions: loading, validation and clear errors."""

import json
import time
from pathlib import Path

import numpy as np
import pytest

from steer.readers import PromptSetError
from steer.resources import DEFAULT_PROMPT_SET
from steer.strength import TrivialPropositionError
from steer.templates import available_templates, load_template
from steer.worlds import Worlds

SST2 = Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2" / "validation.tsv"


def write(path, text):
    path.write_text(text)
    return path


def test_default_prompt_set_is_balanced_and_varied():
    w = Worlds.from_file(DEFAULT_PROMPT_SET)
    labels = w.column("label")
    assert len(w) >= 600
    assert labels.count("positive") == labels.count("negative") >= 250
    assert labels.count("neutral") > 0
    assert len(set(w.column("domain"))) >= 10
    assert len(set(w.column("text"))) == len(w)
    lengths = [len(t.split()) for t in w.column("text")]
    assert min(lengths) <= 2 and max(lengths) >= 15
    assert any(t.lower().startswith("not ") for t in w.column("text"))


def test_templates_render(toy_records):
    assert {"plain", "classify-2shot", "paper-2shot"} <= set(available_templates())
    w = Worlds.from_records(toy_records, "classify-2shot")
    assert w.prompts[0].endswith("Review: the film was wonderful\nSentiment:")
    p = Worlds.from_records(toy_records, "paper-2shot").prompts[1]
    assert p.startswith("Input: This was a truly amazing movie.\n")
    assert p.endswith("Input: the food was terrible\nClassify the sentiment of the message:")
    assert Worlds.from_records(toy_records, "[{domain}] {text}").prompts[0] == "[films] the film was wonderful"


def test_template_with_unknown_field_names_it(toy_records):
    with pytest.raises(PromptSetError, match=r"\['stars'\] missing from record 0"):
        Worlds.from_records(toy_records, "{text} ({stars} stars)")
    with pytest.raises(PromptSetError, match="unknown template"):
        load_template("no-such-template")


def test_propositions(toy_records):
    w = Worlds.from_records(toy_records)
    pos = w.proposition("label=positive")
    assert pos.mask.tolist() == [True, False, True, False, False, True]
    assert w.proposition(label="positive").mask.tolist() == pos.mask.tolist()
    assert w.proposition("label!=neutral").size == 5
    assert w.proposition("score>=0.7").mask.tolist() == [True, False, True, False, False, True]
    assert w.proposition("score<0.2").size == 2
    top = w.proposition("score:top2")
    assert top.mask.tolist() == [True, False, False, False, False, True] and top.name == "score:top2"
    assert w.proposition("score:bottom1").mask.tolist() == [False, False, False, True, False, False]
    comp = pos.complement()
    assert (comp.mask == ~pos.mask).all() and comp.name == "not(label=positive)"
    assert w.mask(np.array([1, 0, 0, 0, 0, 0], bool), "first").size == 1


def test_proposition_errors(toy_records):
    w = Worlds.from_records(toy_records)
    with pytest.raises(PromptSetError, match="unknown value 'postive' for field 'label'; values present: negative, neutral, positive"):
        w.proposition("label=postive")
    with pytest.raises(PromptSetError, match="unknown field 'stars'"):
        w.proposition("stars=5")
    with pytest.raises(PromptSetError, match="unknown value 'label positive' for field 'label'"):
        w.proposition("label positive")  # no operator: the label shorthand
    with pytest.raises(PromptSetError, match="cannot parse"):
        w.proposition("label:middle")
    with pytest.raises(PromptSetError, match="not numeric"):
        w.proposition("label>3")
    with pytest.raises(TrivialPropositionError, match="0 of 6"):
        w.proposition("score>5")
    with pytest.raises(TrivialPropositionError, match="6 of 6"):
        w.proposition("score>=0")
    with pytest.raises(TrivialPropositionError):
        w.proposition("score:top6")


def test_vader_fields_rank_like_the_paper(toy_records):
    w = Worlds.from_records(toy_records).with_vader()
    assert {"vader_pos", "vader_neg", "vader_neu", "vader_compound"} <= set(w.records[0])
    top = w.proposition("vader_pos:top2")
    chosen = {t for t, m in zip(w.column("text"), top.mask) if m}
    assert chosen == {"the film was wonderful", "great music and a warm crowd"}


def test_file_formats(tmp_path, toy_records):
    jl = write(tmp_path / "a.jsonl", "\n".join(json.dumps(r) for r in toy_records) + "\n\n")
    csv_ = write(tmp_path / "a.csv", 'text,label\n"good, really good",positive\nbad,negative\n')
    tsv = write(tmp_path / "a.tsv", "sentence\tlabel\nit 's \"fine\" \t1\nbad \t0\n")
    assert len(Worlds.from_file(jl)) == 6
    assert Worlds.from_file(csv_).column("text")[0] == "good, really good"
    w = Worlds.from_file(tsv, text_field="sentence")
    assert w.prompts[0] == 'it \'s "fine" ' and w.column("label") == ["1", "0"]


def test_sampling_is_seeded(tmp_path, toy_records):
    jl = write(tmp_path / "a.jsonl", "\n".join(json.dumps(r) for r in toy_records))
    a = Worlds.from_file(jl, n=3, seed=1)
    assert a.column("text") == Worlds.from_file(jl, n=3, seed=1).column("text")
    assert Worlds.from_file(jl, n=2).column("text") == [r["text"] for r in toy_records[:2]]
    with pytest.raises(PromptSetError, match="n=7"):
        Worlds.from_file(jl, n=7)


@pytest.mark.parametrize("content, match", [
    ('{"text": "ok"}\n{"text": broken}\n', r"a.jsonl:2: not valid JSON"),
    ('["text"]\n', r"a.jsonl:1: each line must be a JSON object"),
    ("", "no records"),
])
def test_malformed_jsonl(tmp_path, content, match):
    with pytest.raises(PromptSetError, match=match):
        Worlds.from_file(write(tmp_path / "a.jsonl", content))


def test_malformed_delimited(tmp_path):
    with pytest.raises(PromptSetError, match=r"a.tsv:3: 3 columns, the header has 2"):
        Worlds.from_file(write(tmp_path / "a.tsv", "text\tlabel\nfine\t1\nbad\t0\textra\n"))
    with pytest.raises(PromptSetError, match="distinct, non-empty field names"):
        Worlds.from_file(write(tmp_path / "b.csv", "text,text\na,b\n"))
    with pytest.raises(PromptSetError, match="unsupported"):
        Worlds.from_file(write(tmp_path / "c.txt", "hello"))
    with pytest.raises(PromptSetError, match="does not exist"):
        Worlds.from_file(tmp_path / "missing.jsonl")
    with pytest.raises(PromptSetError, match="no field 'sentence'"):
        Worlds.from_file(write(tmp_path / "d.csv", "text\nfine\n"), text_field="sentence")


def test_hub_dataset_offline_fails_fast():
    t = time.time()
    with pytest.raises(PromptSetError, match="hub is unreachable"):
        Worlds.from_file("stanfordnlp/sst2")
    assert time.time() - t < 10


def test_prompt_set_hash_tracks_records_and_template(toy_records):
    a = Worlds.from_records(toy_records, "plain")
    assert a.prompt_set_hash == Worlds.from_records(toy_records, "plain").prompt_set_hash
    assert a.prompt_set_hash != Worlds.from_records(toy_records, "classify-2shot").prompt_set_hash
    assert a.prompt_set_hash != Worlds.from_records(toy_records[::-1], "plain").prompt_set_hash


@pytest.mark.skipif(not SST2.is_file(), reason="needs ../shared/data/sst2")
def test_sst2_loads_with_its_labels():
    w = Worlds.from_file(SST2, text_field="sentence", template="paper-2shot", n=100, seed=0)
    assert len(w) == 100 and set(w.column("label")) == {"0", "1"}
    assert w.proposition("label=1").size + w.proposition("label=0").size == 100


def test_a_proposition_is_parsed_once_with_the_label_shorthand_and_vader_on_demand(toy_records):
    w = Worlds.from_records(toy_records)
    assert (w.proposition("positive").mask == w.proposition("label=positive").mask).all()
    assert w.proposition(" negative ").name == "label=negative"
    two = Worlds.from_records([{"text": "fine", "label": "very good"}, {"text": "meh", "label": "bad"}])
    assert two.proposition("very good").mask.tolist() == [True, False]
    before = w.prompt_set_hash
    top = w.proposition("vader_pos:top2")  # VADER columns computed on first use
    assert top.mask.sum() == 2 and "vader_pos" not in w.records[0] and w.prompt_set_hash == before
