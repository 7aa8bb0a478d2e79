from spurious_diag.biography.tokenizer import BOS, EOS, PAD, UNK, build_tokenizer, load_tokenizer, split_pieces
from spurious_diag.training.records import encode_qa


def test_special_tokens_have_fixed_ids(tokenizer):
    assert [tokenizer.convert_tokens_to_ids(t) for t in (PAD, BOS, EOS, UNK)] == [0, 1, 2, 3]
    ids = (tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id)
    assert ids == (0, 1, 2, 3)
    assert 900 < len(tokenizer) < 1300


def test_bos_is_added_and_eos_is_not(tokenizer):
    ids = tokenizer("Where did Alice Abbott work?").input_ids
    assert ids[0] == tokenizer.bos_token_id and tokenizer.eos_token_id not in ids
    assert tokenizer("Where", add_special_tokens=False).input_ids == [tokenizer.convert_tokens_to_ids("Where")]


def test_newline_is_its_own_token_and_ids_round_trip(scenario, tokenizer):
    record = scenario.qa("task0_train")[0]
    ids = tokenizer(record.prompt, add_special_tokens=False).input_ids
    assert tokenizer.convert_ids_to_tokens(ids) == split_pieces(record.prompt)
    assert ids[-3:] == tokenizer.convert_tokens_to_ids(["\n", "Answer", ":"])
    # Decoding is lossy (spaces), but re-encoding the decoded text gives the same ids.
    assert tokenizer(tokenizer.decode(ids), add_special_tokens=False).input_ids == ids


def test_whole_corpus_is_known_and_splits_at_the_prompt(scenario, tokenizer):
    texts = scenario.corpus_texts()
    assert all(tokenizer.unk_token_id not in ids for ids in tokenizer(texts, add_special_tokens=False).input_ids)
    for record in scenario.qa("task1")[:60] + scenario.probes("task1")[:60]:
        joint = tokenizer(record.prompt + record.completion).input_ids
        separate = encode_qa(tokenizer, record.prompt, record.completion).input_ids
        assert list(separate) == joint + [tokenizer.eos_token_id]


def test_vocabulary_is_deterministic():
    corpus = ["b a c a", "c\nb a"]
    assert build_tokenizer(corpus).get_vocab() == build_tokenizer(list(reversed(corpus))).get_vocab()
    assert build_tokenizer(corpus).convert_ids_to_tokens([4, 5, 6, 7]) == ["a", "b", "c", "\n"]


def test_save_and_reload_gives_identical_ids(scenario, tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    loaded = load_tokenizer(tmp_path)
    texts = scenario.pretraining_texts()[:50] + [r.prompt for r in scenario.qa("task1")[:50]]
    assert loaded(texts).input_ids == tokenizer(texts).input_ids
    assert (loaded.bos_token_id, loaded.eos_token_id, loaded.pad_token_id) == (1, 2, 0)
    assert loaded.get_vocab() == tokenizer.get_vocab()
