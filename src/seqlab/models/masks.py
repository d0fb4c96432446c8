"""Which positions of a padded batch hold real tokens: the one mask every model and the ONNX export use."""

import torch


def padding_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """Lengths (B,) -> (B, max_len) bool, True at each sequence's real tokens and False at the padding
    after them: the convention of SDPA's boolean `attn_mask` and Hugging Face's `attention_mask`,
    the opposite of nn.Transformer's `key_padding_mask`. On the device of `lengths`."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]
