"""fairseq adapter: ``data2vec2_regression`` criterion for ``data2vec_multi`` (data2vec 2.0).

Sums the model's unreduced ``losses`` (as fairseq's ``model`` criterion does), logs ``loss_<name>`` per term and
the model's scalar logs (masked_pct, pred_var*, target_var*, ema_decay, model_norm, ema_norm) without reading them
on the host, and checks collapse one step late like ``data2vec_regression`` (never inside the model).
"""
import logging

import torch
from fairseq import metrics
from fairseq.criterions import register_criterion

from ..tasks._common import unwrap_model
from .regression import CollapseError, Data2VecRegressionConfig, Data2VecRegressionCriterion

logger = logging.getLogger(__name__)
LOGGED = ("masked_pct", "ema_decay", "model_norm", "ema_norm")


@register_criterion("data2vec2_regression", dataclass=Data2VecRegressionConfig)
class Data2Vec2RegressionCriterion(Data2VecRegressionCriterion):
    def check_collapse(self, model) -> None:
        """Check the previous training step's target/prediction std (already computed: no extra sync)."""
        pending, self._pending = self._pending, None
        if pending is None or self.cfg.collapse_guard == "off" or pending[0] < self.cfg.collapse_start_update:
            return
        min_t, min_p = self._thresholds(model)
        t, p = float(pending[1]), float(pending[2])
        problems = [f"target std {t:.4g} < {min_t}"] if t < min_t else []
        problems += [f"prediction std {p:.4g} < {min_p}"] if p < min_p else []
        if not problems:
            return
        msg = (f"representation collapse suspected at update {pending[0]}: {'; '.join(problems)}. Try a higher "
               "ema_decay/ema_end_decay, a lower learning rate or longer warmup, or instance_norm_target_layer")
        if self.cfg.collapse_guard == "stop":
            raise CollapseError(msg)
        if self._last_warning is None or pending[0] - self._last_warning >= 100:
            self._last_warning = pending[0]
            logger.warning(msg)

    def forward(self, model, sample, reduce=True):
        if model.training:
            self.check_collapse(model)
        out = model(**sample["net_input"])
        terms = {k: v.float().sum() for k, v in out["losses"].items()}
        loss = torch.stack(list(terms.values())).sum()
        sample_size = out["sample_size"]
        pred_vars = [v for k, v in out.items() if k.startswith("pred_var")]
        target_var = next(v for k, v in out.items() if k.startswith("target_var"))
        if model.training:
            worst_pred = torch.stack(pred_vars).min() if len(pred_vars) > 1 else pred_vars[0]
            self._pending = (getattr(unwrap_model(model), "num_updates", 0), target_var, worst_pred)
        log = {"loss": loss.detach(), "sample_size": sample_size, "ntokens": sample_size,
               "nsentences": sample["id"].numel() if "id" in sample else 0, "_stat_count": 1}
        log.update({f"loss_{k}": v.detach() for k, v in terms.items()} if len(terms) > 1 else {})
        log.update({k: (v.detach() if torch.is_tensor(v) else v) for k, v in out.items()
                    if k.startswith(("pred_var", "target_var")) or k in LOGGED})
        return loss, sample_size, log

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        def total(key):
            return sum(float(log.get(key, 0)) for log in logging_outputs)

        sample_size = max(total("sample_size"), 1.0)
        metrics.log_scalar("loss", total("loss") / sample_size, sample_size, round=4)
        metrics.log_scalar("sample_size", sample_size, round=0)
        metrics.log_scalar("nsentences", total("nsentences"), round=0)
        keys = {k for log in logging_outputs for k in log}
        n = max(total("_stat_count"), 1.0)  # averaged keys are summed over micro-batches and ranks
        for k in sorted(keys):
            if k.startswith("loss_"):
                metrics.log_scalar(k, total(k) / sample_size, sample_size, round=4)
            elif k.startswith(("pred_var", "target_var")) or k in LOGGED:
                metrics.log_scalar(k, total(k) / n, round=6 if k == "ema_decay" else 4)
