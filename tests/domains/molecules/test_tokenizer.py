import pytest

from dgm_science.tokenizer import Tokenizer, split_smiles


def test_regex_splits_multi_character_tokens():
    assert split_smiles("C[C@@H](Cl)c1ccc(Br)cc1%10") == [
        "C", "[C@@H]", "(", "Cl", ")", "c", "1", "c", "c", "c", "(", "Br", ")", "c", "c", "1", "%10"]


def test_smiles_round_trip(moses_smiles):
    tok = Tokenizer.fit("smiles", moses_smiles)
    for s in moses_smiles:
        ids = tok.encode(s)
        assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id
        assert tok.decode(ids) == s


def test_selfies_round_trip_is_the_same_molecule(moses_smiles):
    from rdkit import Chem

    tok = Tokenizer.fit("selfies", moses_smiles[:50])
    for s in moses_smiles[:50]:
        back = tok.decode(tok.encode(s))
        assert Chem.CanonSmiles(back) == Chem.CanonSmiles(s)


def test_unknown_token_and_missing_eos_decode_to_none(moses_smiles):
    tok = Tokenizer.fit("smiles", ["CCO"])
    ids = tok.encode("CCN")  # N is not in the vocabulary
    assert tok.unk_id in ids
    assert tok.decode(ids) is None
    assert tok.decode([tok.bos_id] + tok.encode("CCO")[1:-1]) is None  # no <eos>


def test_state_round_trip(moses_smiles):
    tok = Tokenizer.fit("smiles", moses_smiles)
    again = Tokenizer.from_state(tok.state())
    assert again.tokens == tok.tokens and again.encode(moses_smiles[0]) == tok.encode(moses_smiles[0])


def test_bad_inputs():
    with pytest.raises(ValueError, match="unknown tokenizer"):
        Tokenizer("bpe")
    with pytest.raises(ValueError, match="does not cover"):
        split_smiles("C&C")


def test_encode_batch_pads_and_counts_too_long():
    tok = Tokenizer.fit("smiles", ["CCO", "CCCCCCCCCC"])
    batch, too_long = tok.encode_batch(["CCO", "CCCCCCCCCC"], max_length=6)
    assert batch.shape == (2, 6) and too_long == 1
    assert batch[0, 5] == tok.pad_id and batch[0, 4] == tok.eos_id
