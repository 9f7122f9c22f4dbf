"""Expected features of one reference checkpoint, computed by the reference itself (run with the reference shim).

Usage (from scripts/make_reference_checkpoints.sh):  expected.py OUT REF WORK NAME
Writes OUT/<NAME>.expected.pt and the README section WORK/readme/<NAME>.md (merged by readme.py).
"""
import contextlib, io, json, os, sys
from argparse import Namespace

import torch
import fairseq  # noqa: F401
from fairseq import checkpoint_utils, utils

from readme import EXTRA_KEYS, KEYS, SHAPE_KEYS, TASK_KEYS, get

out, ref, work, name = sys.argv[1:5]
utils.import_user_module(Namespace(user_dir=ref))
data = {
    "audio": os.path.join(work, "data", "audio"),
    "text": os.path.join(work, "data", "text_bin"),
    "image": os.path.join(work, "data", "images"),
}
cmds = dict(l.rstrip("\n").split("\t", 1) for l in open(os.path.join(work, "commands.txt")))


def plain(o):
    if isinstance(o, torch.Tensor):
        return o.detach().cpu().clone()
    if isinstance(o, dict):
        return {str(k): plain(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [plain(v) for v in o]
    return o


path = os.path.join(out, f"{name}.pt")
raw_size = os.path.getsize(path)
try:
    st = torch.load(path, weights_only=True)
    wo = "OK: loads with torch.load(weights_only=True)"
except Exception as e:  # noqa: BLE001
    wo = f"FAILS with weights_only=True: {type(e).__name__}: {str(e).splitlines()[0]}"
    st = torch.load(path, weights_only=False)
cfg = st["cfg"]
mname = cfg["model"]["_name"]
mod = {"data2vec_audio": "audio", "data2vec_text": "text", "data2vec_vision": "image"}.get(mname)
if mname == "data2vec_multi":
    mod = {"AUDIO": "audio", "TEXT": "text", "IMAGE": "image"}[cfg["model"]["supported_modality"]]
with contextlib.redirect_stdout(io.StringIO()):  # the reference vision code prints on every forward
    models, saved_cfg, task = checkpoint_utils.load_model_ensemble_and_task(
        [path], arg_overrides={"data": data[mod]}
    )
model = models[0].eval()
g = torch.Generator().manual_seed(0)
extra_doc = ""
with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
    if mod == "audio":
        source = torch.randn(1, 16000, generator=g)
        inputs = {"source": source}
        if mname == "data2vec_audio":
            r = model.extract_features(source, None, mask=False)
            call = "model.extract_features(inputs['source'], None, mask=False)['x']"
        else:
            r = model.extract_features(source, mode="AUDIO", padding_mask=None, mask=False)
            call = "model.extract_features(inputs['source'], mode='AUDIO', padding_mask=None, mask=False)['x']"
        feats = r["x"]
        extra_doc = (" The input is passed as is (the task's normalize=true would layer-norm a dataset waveform; "
                     "this random-normal input is already ~normalised but NOT exactly).")
    elif mod == "text":
        d = task.source_dictionary
        toks = [d.bos()] + [d.index(f"w{i}") for i in (3, 17, 5, 29, 11, 0, 38)] + [d.eos()]
        src = torch.tensor([toks])
        inputs = {"src_tokens": src}
        if mname == "data2vec_text":
            feats = model(src, features_only=True)[0]
            call = "model(inputs['src_tokens'], features_only=True)[0]"
        else:
            r = model.extract_features(src, mode="TEXT", padding_mask=src.eq(d.pad()), mask=False)
            feats = r["x"]
            call = "model.extract_features(inputs['src_tokens'], mode='TEXT', padding_mask=src.eq(pad), mask=False)['x']"
        extra_doc = f" Token ids are from text_dict.txt + <mask> (len(dictionary)={len(d)}, <mask>={d.index('<mask>')})."
    else:
        img = torch.randn(1, 3, 32, 32, generator=g)
        inputs = {"img": img}
        if mname == "data2vec_vision":
            feats = model(img, mask=False)
            call = "model(inputs['img'], mask=False)  (student, final norm, cls dropped)"
        else:
            feats = model.extract_features(img, mode="IMAGE", mask=False)["x"]
            call = "model.extract_features(inputs['img'], mode='IMAGE', mask=False)['x']  (extra tokens removed)"
has_teacher = getattr(model, "ema", None) is not None or getattr(getattr(model, "encoder", None), "ema", None) is not None
num_updates = st["optimizer_history"][-1]["num_updates"]
ema_key = "encoder._ema" if "encoder._ema" in st["model"] else "_ema"
exp = {
    "name": name,
    "inputs": inputs,
    "features": feats,
    "expected_doc": (
        f"checkpoint_utils.load_model_ensemble_and_task(['{name}.pt'], arg_overrides={{'data': <data dir>}}); "
        f"model = models[0].eval(); features = {call} under torch.no_grad().{extra_doc}"
    ),
    "num_updates": int(num_updates),
    "model_name": mname,
    "teacher_key": ema_key,
    "n_teacher_tensors": len(st["model"][ema_key]),
}
enc = model.modality_encoders[mod.upper()] if mname == "data2vec_multi" else None
if isinstance(getattr(enc, "alibi_bias", None), torch.nn.Parameter):  # learned_alibi: the bias the reference uses
    with torch.no_grad():  # (1, H, T, T) before alibi_scale: T=24 crops the table, T=49 / 799 replicate-pad it
        heads = enc.alibi_bias.size(1)
        eff = {f"T{t}": enc.get_alibi_bias(batch_size=1, time_steps=t, heads=heads, dtype=torch.float32,
                                           device=torch.device("cpu")) for t in (24, 49, 799)}
    eff["T799"] = eff["T799"][..., ::17, ::17]
    exp["learned_alibi_bias"] = eff
    exp["learned_alibi_doc"] = (
        "model.modality_encoders[MODE].get_alibi_bias(batch_size=1, time_steps=T, heads=num_heads, dtype=float32, "
        "device=cpu) of the loaded reference model (the learned table, cropped or replicate-padded, before "
        "alibi_scale); T799 is subsampled [..., ::17, ::17]")
torch.save(plain(exp), os.path.join(out, f"{name}.expected.pt"))
torch.load(os.path.join(out, f"{name}.expected.pt"), weights_only=True)

readme = [f"## {name}.pt", ""]
readme += [f"- size: {raw_size / 1024:.0f} KiB; model `{mname}`; optimizer_history[-1].num_updates = {num_updates}; "
           f"teacher saved under `{ema_key}` ({len(st['model'][ema_key])} tensors); teacher rebuilt on load: {has_teacher}",
           f"- weights_only: {wo}",
           f"- command: `{cmds.get(name, '?')}`",
           f"- features: `{call}` -> shape {tuple(feats.shape)} (stored in `{name}.expected.pt`)",
           "- cfg.task: " + ", ".join(f"{k}={json.dumps(cfg['task'].get(k), default=str)}" for k in TASK_KEYS if k in cfg["task"]),
           "- cfg.model: " + ", ".join(f"{k}={json.dumps(get(cfg['model'], k), default=str)}" for k in KEYS[mname])]
if name in EXTRA_KEYS:
    readme.append("- cfg.model (option under test): "
                  + ", ".join(f"{k}={json.dumps(get(cfg['model'], k), default=str)}" for k in EXTRA_KEYS[name]))
for k in SHAPE_KEYS.get(name, []):
    t = st["model"]["_ema"][k[len("_ema."):]] if k.startswith("_ema.") else st["model"][k]
    readme.append(f"- state dict: `{k}` shape {tuple(t.shape)}")
if "learned_alibi_bias" in exp:
    readme.append("- also in `.expected.pt`: `learned_alibi_bias` {T24, T49, T799 (subsampled [..., ::17, ::17])}: "
                  "the reference's effective learned ALiBi bias for T positions (`learned_alibi_doc`)")
if mname == "data2vec_multi" and name in EXTRA_KEYS:
    dec = sorted(k for k in st["model"] if ".decoder." in k and not k.startswith("_ema"))
    readme.append(f"- decoder: {len(dec)} student tensors (e.g. `{dec[0]}` ... `{dec[-1]}`)")
readme.append("")
os.makedirs(os.path.join(work, "readme"), exist_ok=True)
with open(os.path.join(work, "readme", f"{name}.md"), "w") as f:
    f.write("\n".join(readme))
print(f"[ok] {name}: {wo}; features {tuple(feats.shape)}", file=sys.stderr)
