import torch
from omegaconf import OmegaConf

from data2vec_plugin.models._audio_config import Data2VecAudioConfig
from data2vec_plugin.models.data2vec_audio import Data2VecAudioModel

TINY = dict(conv_feature_layers="[(32, 10, 5)] + [(32, 3, 2)] * 2", encoder_layers=2, encoder_embed_dim=32,
            encoder_ffn_embed_dim=64, encoder_attention_heads=4, conv_pos=16, conv_pos_groups=4,
            average_top_k_layers=2, instance_norm_target_layer=True, ema_anneal_end_step=100, max_update=100,
            dropout=0.0, attention_dropout=0.0)


def tiny_cfg(**over):
    kw = dict(TINY)
    kw.update(over)
    return OmegaConf.structured(Data2VecAudioConfig(**kw))


def tiny_model(**over):
    return Data2VecAudioModel(tiny_cfg(**over))


def random_mask(b, t, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, t, generator=g) < 0.5
