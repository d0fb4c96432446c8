"""Weight decay applies to weight matrices only: never to biases, norms or embeddings (tied ones included)."""

import functools

import torch

from seqlab.models.gpt import GPT
from seqlab.models.rnn import RNNClassifier
from seqlab.models.transformer import TransformerClassifier
from seqlab.tasks.optim import build_optimizer

WEIGHT_DECAY = 0.1


def optimizer_for(module: torch.nn.Module) -> torch.optim.Optimizer:
    return build_optimizer(functools.partial(torch.optim.AdamW, lr=1e-3, weight_decay=WEIGHT_DECAY), module)


def weight_decay_by_name(module: torch.nn.Module) -> dict[str, float]:
    """The weight decay the optimiser applies to each parameter, by the parameter's name."""
    decay = {id(p): group["weight_decay"] for group in optimizer_for(module).param_groups for p in group["params"]}
    return {name: decay[id(p)] for name, p in module.named_parameters()}


def decayed_names(module: torch.nn.Module) -> set[str]:
    decays = weight_decay_by_name(module)
    assert set(decays.values()) <= {WEIGHT_DECAY, 0.0}
    return {name for name, decay in decays.items() if decay == WEIGHT_DECAY}


def test_gpt_decays_its_linear_weights_only():
    model = GPT(40, block_size=8, num_layers=2, num_heads=2, hidden_dim=16, bias=True)
    decayed = decayed_names(model)
    linear_weights = {name for name, m in model.named_modules() if isinstance(m, torch.nn.Linear) for name in [f"{name}.weight"]}
    # The output layer shares the token embedding: it is an embedding, so it doesn't decay.
    assert decayed == linear_weights - {"lm_head.weight"}
    assert "transformer.wte.weight" not in decayed and "transformer.wpe.weight" not in decayed
    assert not any(name.endswith("bias") or ".ln_" in name for name in decayed)


def test_the_optimizer_holds_every_parameter_once_the_tied_matrix_included():
    model = GPT(40, block_size=8, num_layers=1, num_heads=2, hidden_dim=16)
    held = [id(p) for group in optimizer_for(model).param_groups for p in group["params"]]
    assert len(held) == len(set(held)) == len(list(model.parameters()))


def test_rnn_and_transformer_classifiers_leave_embeddings_biases_and_norms_alone():
    rnn = RNNClassifier(40, 2, cell="rnn", embed_dim=8, hidden_dim=8, bidirectional=True)
    assert decayed_names(rnn) == {
        "recurrence.input_maps.0.weight",
        "recurrence.input_maps.1.weight",
        "recurrence.recurrent_maps.0.weight",
        "recurrence.recurrent_maps.1.weight",
        "head.weight",
    }
    lstm = RNNClassifier(40, 2, cell="lstm", embed_dim=8, hidden_dim=8)
    assert decayed_names(lstm) == {"recurrence.weight_ih_l0", "recurrence.weight_hh_l0", "head.weight"}
    transformer = TransformerClassifier(40, 2, hidden_dim=16, num_heads=2, num_layers=1, max_len=8, pooling="cls")
    decayed = decayed_names(transformer)
    assert "embedding.weight" not in decayed and "position_embedding.weight" not in decayed and "cls" not in decayed
    assert decayed == {name for name, p in transformer.named_parameters() if p.ndim == 2 and "embedding" not in name}
