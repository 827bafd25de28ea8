"""Reusable blocks of the ResNeSt family: split attention, DropBlock, and the per-mode graph forms."""
from .split_attention import RadixSoftmax, SplitAttentionConv
from .dropblock import DropBlock, set_drop_prob, DropBlockScheduler, without_random_ops
from .trace import trace_mode, graph_mode, fuses_norm_relu, norm_relu

__all__ = ['RadixSoftmax', 'SplitAttentionConv', 'DropBlock', 'set_drop_prob', 'DropBlockScheduler',
           'without_random_ops', 'trace_mode', 'graph_mode', 'fuses_norm_relu', 'norm_relu']
