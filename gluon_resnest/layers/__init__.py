"""Reusable blocks of the ResNeSt family: split attention and DropBlock."""
from .split_attention import RadixSoftmax, SplitAttentionConv
from .dropblock import DropBlock, set_drop_prob, DropBlockScheduler, without_random_ops, trace_mode

__all__ = ['RadixSoftmax', 'SplitAttentionConv', 'DropBlock', 'set_drop_prob', 'DropBlockScheduler',
           'without_random_ops', 'trace_mode']
