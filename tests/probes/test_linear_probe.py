import numpy as np
import torch

from spurious_diag.probes.linear_probe import PROBE_COLUMNS, linear_probe, probe_layers


def test_random_labels_give_chance_and_planted_labels_are_decoded():
    rng = np.random.default_rng(0)
    n, d, classes = 600, 16, 4
    labels = rng.integers(0, classes, n)
    noise = torch.tensor(rng.normal(size=(1, n, d)))
    planted = noise.clone()
    planted[0, np.arange(n), labels] += 4.0  # the class is written along one axis per class
    hidden = torch.cat([noise, planted])  # layer 0: random features, layer 1: planted
    train, test = np.arange(400), np.arange(400, n)
    frame = probe_layers(hidden, labels.tolist(), train, test, seed=0)
    random_row, planted_row = frame.iloc[0], frame.iloc[1]
    assert random_row["chance_uniform"] == 0.25
    assert abs(random_row["acc"] - 0.25) < 0.1  # random labels for these features: chance
    assert abs(random_row["chance_majority"] - 0.25) < 0.1
    assert planted_row["acc"] > 0.9
    assert abs(planted_row["acc_shuffled"] - 0.25) < 0.1  # the shuffled-label control stays at chance


def test_linear_probe_is_person_disjoint_and_per_layer(tiny_llama):
    model = tiny_llama(num_layers=2)

    class Tok:  # a minimal tokenizer: one id per character
        pad_token_id = 0
        eos_token_id = 1

        def __call__(self, text, add_special_tokens=True):
            ids = [2 + (ord(c) % 90) for c in text]

            class Out:
                input_ids = ([1] if add_special_tokens else []) + ids
            return Out()

    records = [{"prompt": f"person {p} q{a}", "completion": f" {p % 3}", "attribute": f"attr{a}", "person_id": p}
               for p in range(30) for a in range(2)]
    frame = linear_probe({"m": model}, Tok(), records, test_fraction=0.3, seed=0)
    assert list(frame.columns) == PROBE_COLUMNS
    assert sorted(frame["layer"].unique()) == [0, 1, 2]  # embeddings + 2 blocks
    assert set(frame["attribute"]) == {"attr0", "attr1"}
    assert (frame["n_test"] == 9).all() and (frame["n_train"] == 21).all()  # 9 of 30 people held out
