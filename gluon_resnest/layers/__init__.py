"""Reusable blocks of the ResNeSt family: split attention, DropBlock, and the per-mode graph forms."""
from .split_attention import RadixSoftmax, SplitAttentionConv
from .dropblock import DropBlock, set_drop_prob, DropBlockScheduler, without_random_ops, clear_cached_graphs
from .attention_inference import SplitAttentionInference, attention_inference_form
from .trace import trace_mode, graph_mode, fuses_norm_relu, norm_relu

__all__ = ['RadixSoftmax', 'SplitAttentionConv', 'DropBlock', 'set_drop_prob', 'DropBlockScheduler',
           'without_random_ops', 'clear_cached_graphs', 'SplitAttentionInference',
           'attention_inference_form', 'trace_mode', 'graph_mode', 'fuses_norm_relu', 'norm_relu']
