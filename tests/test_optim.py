"""Weight decay applies to weight matrices only: never to biases, norms or embeddings (tied ones included)."""

import torch

from seqlab.models.gpt import GPT
from seqlab.models.rnn import RNNClassifier
from seqlab.models.transformer import TransformerClassifier
from seqlab.tasks.optim import build_optimizer, parameter_groups


def decayed_names(module: torch.nn.Module) -> set[str]:
    decay, no_decay = parameter_groups(module)
    assert no_decay["weight_decay"] == 0.0
    ids = {id(p) for p in decay["params"]}
    return {name for name, p in module.named_parameters() if id(p) in ids}


def test_gpt_decays_its_linear_weights_only():
    model = GPT(40, block_size=8, n_layer=2, n_head=2, n_embd=16, bias=True)
    decay, no_decay = parameter_groups(model)
    decayed = decayed_names(model)
    linear_weights = {name for name, m in model.named_modules() if isinstance(m, torch.nn.Linear) for name in [f"{name}.weight"]}
    # The output layer shares the token embedding: it is an embedding, so it doesn't decay.
    assert decayed == linear_weights - {"lm_head.weight"}
    assert "transformer.wte.weight" not in decayed and "transformer.wpe.weight" not in decayed
    assert not any(name.endswith("bias") or ".ln_" in name for name in decayed)
    # Every parameter once, the tied matrix included.
    counted = [id(p) for group in (decay, no_decay) for p in group["params"]]
    assert len(counted) == len(set(counted)) == len(list(model.parameters()))


def test_rnn_and_transformer_classifiers_leave_embeddings_biases_and_norms_alone():
    rnn = RNNClassifier(40, 2, cell="rnn", embed_dim=8, hidden_dim=8, bidirectional=True)
    assert decayed_names(rnn) == {
        "recurrence.input_maps.0.weight", "recurrence.input_maps.1.weight",
        "recurrence.recurrent_maps.0.weight", "recurrence.recurrent_maps.1.weight", "head.weight",
    }
    lstm = RNNClassifier(40, 2, cell="lstm", embed_dim=8, hidden_dim=8)
    assert decayed_names(lstm) == {"recurrence.weight_ih_l0", "recurrence.weight_hh_l0", "head.weight"}
    transformer = TransformerClassifier(40, 2, d_model=16, n_heads=2, n_layers=1, max_len=8, pooling="cls")
    decayed = decayed_names(transformer)
    assert "embedding.weight" not in decayed and "position_embedding.weight" not in decayed and "cls" not in decayed
    assert decayed == {name for name, p in transformer.named_parameters() if p.ndim == 2 and "embedding" not in name}


def test_optimizer_gets_both_groups_with_their_decay():
    import functools

    model = GPT(40, block_size=8, n_layer=1, n_head=2, n_embd=16)
    optimizer = build_optimizer(functools.partial(torch.optim.AdamW, lr=1e-3, weight_decay=0.1), model)
    assert [group["weight_decay"] for group in optimizer.param_groups] == [0.1, 0.0]
