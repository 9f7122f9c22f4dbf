"""fairseq adapter: ``data2vec_regression`` criterion. Owns the loss, the logs and the collapse guard."""
import logging
from dataclasses import dataclass, field
from typing import Optional

import torch
from fairseq import metrics
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import ChoiceEnum, FairseqDataclass

from ..modules.losses import feature_std, masked_regression_loss, within_across_ratio
from ..tasks._common import unwrap_model

logger = logging.getLogger(__name__)
AVERAGED_KEYS = ("ema_decay", "target_var", "pred_var", "var_ratio")


@dataclass
class Data2VecRegressionConfig(FairseqDataclass):
    collapse_guard: ChoiceEnum(["off", "warn", "stop"]) = field(
        default="warn", metadata={"help": "what to do when target or prediction std falls below its threshold: "
                                          "nothing, log a warning (at most every 100 updates), or stop training"})
    collapse_start_update: int = field(default=5000, metadata={"help": "guard only after this many updates "
                                                                        "(the reference uses 5000)"})
    min_target_var: Optional[float] = field(default=None, metadata={
        "help": "target std threshold; None = the model's min_target_var (0.1 if it has none)"})
    min_pred_var: Optional[float] = field(default=None, metadata={
        "help": "prediction std threshold; None = the model's min_pred_var (0.01 if it has none)"})
    min_var_ratio: float = field(default=0.05, metadata={
        "help": "threshold of var_ratio = within-sample / across-sample variance of the student's predictions; "
                "far below 1 means the model only encodes per-sample global features (collapse that "
                "target_var/pred_var miss). 0 disables this rule"})
    check_finite: bool = field(default=True, metadata={
        "help": "stop with the batch's sample ids when the loss is NaN/inf (one scalar device sync per "
                "micro-batch; fairseq syncs on the gradient norm anyway)"})


class CollapseError(RuntimeError):
    pass


@register_criterion("data2vec_regression", dataclass=Data2VecRegressionConfig)
class Data2VecRegressionCriterion(FairseqCriterion):
    def __init__(self, cfg: Data2VecRegressionConfig, task):
        super().__init__(task)
        self.cfg = cfg
        self._pending = None
        self._last_warning = None

    def _thresholds(self, model):
        mcfg = getattr(unwrap_model(model), "cfg", None)
        t = self.cfg.min_target_var if self.cfg.min_target_var is not None else getattr(mcfg, "min_target_var", 0.1)
        p = self.cfg.min_pred_var if self.cfg.min_pred_var is not None else getattr(mcfg, "min_pred_var", 0.01)
        return float(t), float(p)

    def check_collapse(self, model) -> None:
        """Check the previous training step's statistics (already computed, so no extra device sync)."""
        pending, self._pending = self._pending, None
        if pending is None or self.cfg.collapse_guard == "off":
            return
        num_updates, target_var, pred_var, ratio = pending
        if num_updates < self.cfg.collapse_start_update:
            return
        min_t, min_p = self._thresholds(model)
        t, p, r = float(target_var), float(pred_var), float(ratio)
        problems = []
        if t < min_t:
            problems.append(f"target std {t:.4g} < {min_t}")
        if p < min_p:
            problems.append(f"prediction std {p:.4g} < {min_p}")
        if r < self.cfg.min_var_ratio:
            problems.append(f"within/across-sample variance ratio {r:.4g} < {self.cfg.min_var_ratio} "
                            "(predictions barely vary inside a sample)")
        if not problems:
            return
        msg = (f"representation collapse suspected at update {num_updates}: {'; '.join(problems)}. Try a higher "
               "ema_decay/ema_end_decay, a lower learning rate or longer warmup, instance_norm_target_layer=true, "
               "or more masking; thresholds: criterion.min_target_var / criterion.min_pred_var")
        if self.cfg.collapse_guard == "stop":
            raise CollapseError(msg)
        if self._last_warning is None or num_updates - self._last_warning >= 100:
            self._last_warning = num_updates
            logger.warning(msg)

    def forward(self, model, sample, reduce=True):
        if model.training:
            self.check_collapse(model)
        out = model(**sample["net_input"])
        mask = out["mask"]
        loss = masked_regression_loss(out["pred"], out["target"], mask, out["loss_beta"], out["loss_scale"])
        sample_size = mask.sum()
        if self.cfg.check_finite and not torch.isfinite(loss):
            ids = sample["id"].tolist() if "id" in sample else "unknown"
            raise FloatingPointError(
                f"non-finite data2vec loss ({loss.item()}) at update {getattr(unwrap_model(model), 'num_updates', '?')}"
                f"; sample ids in this batch: {ids}. Check these inputs; with fp16 try a lower lr or "
                "common.fp16_init_scale, or bf16")
        target_var = feature_std(out["target"], mask)
        pred_var = feature_std(out["pred"], mask)
        ratio = within_across_ratio(out["pred"], mask)
        if model.training:
            self._pending = (getattr(unwrap_model(model), "num_updates", 0), target_var, pred_var, ratio)
        logging_output = {
            "loss": loss.detach(), "sample_size": sample_size.detach(), "ntokens": sample_size.detach(),
            "nsentences": sample["id"].numel(), "ema_decay": out["ema_decay"],
            "target_var": target_var, "pred_var": pred_var, "var_ratio": ratio, "_stat_count": 1,
        }
        return loss, sample_size, logging_output

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        def total(key):
            return sum(float(log.get(key, 0)) for log in logging_outputs)

        sample_size = total("sample_size")
        metrics.log_scalar("loss", total("loss") / max(sample_size, 1.0), sample_size, round=4)
        metrics.log_scalar("sample_size", sample_size, round=0)
        metrics.log_scalar("nsentences", total("nsentences"), round=0)
        n = max(total("_stat_count"), 1.0)  # averaged keys are summed over micro-batches and ranks
        for key in AVERAGED_KEYS:
            if any(key in log for log in logging_outputs):
                metrics.log_scalar(key, total(key) / n, round=6 if key == "ema_decay" else 4)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        # summable logs are reduced with one all_reduce (works with gloo on CPU); fairseq's non-summable path
        # uses a CUDA-only all_gather_list
        return True
