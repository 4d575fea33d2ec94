"""Posterior-collapse diagnostic of seq-vae and seq-hvae on 16S V4 (issue 36): per latent layer
Var_x of E_q[z | x] (mean and max over units), the active units (> 0.01), the mean KL, and the
variance over x and over channels of the encoder's masked-mean-pooled features, on the first 256
validation sequences, at init and every EVERY steps of a plain AdamW loop (lr 0.002, linear warm-up
over 100 steps, gradient clip 1.0, batches of 32 drawn uniformly, KL warm-up as the model's config).

    python bench/hvae_collapse_diagnostic.py STEPS '{"seq-hvae": {<model keys over the default>}}' seq-vae,seq-hvae EVERY

Data: /tmp/fresh/resources/sequences/16s-v4/data (a prepared 16s-v4, DATA below). One JSON line per
report on stdout."""
import sys, json, time, torch, yaml
from pathlib import Path
from dgm_science import api, registry
import dgm_science.domains  # noqa
torch.set_num_threads(1)
DATA = Path("/tmp/fresh/resources/sequences/16s-v4/data")
steps = int(sys.argv[1]) if len(sys.argv) > 1 else 0
overrides = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
every = int(sys.argv[4]) if len(sys.argv) > 4 else 10**9
models = sys.argv[3].split(",") if len(sys.argv) > 3 else ["seq-vae", "seq-hvae"]
cfgall = yaml.safe_load(open("workflows/config/default.yaml"))
def find(d, name):
    if isinstance(d, dict):
        if name in d and isinstance(d[name], dict) and "model" in d[name]: return d[name]
        for v in d.values():
            r = find(v, name)
            if r is not None: return r
for name in models:
    c = find(cfgall, name)
    c = {"model": {**c["model"], **overrides.get(name, {})}, "train": c["train"]}
    rc = api.RunConfig.parse(name, c)
    spec = registry.get("model", name); dom = registry.get("domain", spec.domain)
    torch.manual_seed(0)
    state = dom.fit_state(DATA, spec, rc.model)
    model = spec.build(rc.model, state)
    tr, va = dom.datasets(DATA, spec, rc.model, state)
    vb = va.collate(list(range(256)))
    def report(tag):
        model.eval()
        with torch.no_grad():
            means, kls = model.latent_terms(vb)
            enc = model.encoder
            feats = enc.pooled(vb, getattr(enc, "bounds", [len(enc.convs)]))
        out = {"tag": tag, "model": name,
               "var_mu_per_layer(mean over units)": [round(float(m.var(0).mean()), 5) for m in means],
               "var_mu_max": [round(float(m.var(0).max()), 5) for m in means],
               "active": [int((m.var(0) > 0.01).sum()) for m in means],
               "kl_per_layer": [round(float(k), 4) for k in kls.mean(0)],
               "pooled_feature_var_x(mean over ch)": [round(float(f.var(0).mean()), 5) for f in feats],
               "pooled_feature_var_ch(mean over x)": [round(float(f.var(1).mean()), 5) for f in feats]}
        print(json.dumps(out), flush=True)
        model.train()
    report("init")
    if steps:
        opt = torch.optim.AdamW(model.parameters(), lr=0.002)
        g = torch.Generator().manual_seed(0)
        t = time.time()
        for s in range(steps):
            for pg in opt.param_groups: pg["lr"] = 0.002 * min(1.0, (s + 1) / 100)
            model.set_training_step(s)
            idx = torch.randint(len(tr), (32,), generator=g).tolist()
            loss = model.loss(tr.collate(idx))
            opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0); opt.step()
            if (s + 1) % every == 0 and s + 1 < steps:
                report(f"step {s+1}")
            if (s + 1) % 10 == 0:
                print(name, s + 1, {k: round(float(v), 3) for k, v in model.metrics_to_log().items()}, round(time.time() - t, 1), flush=True)
        report(f"after {steps} steps")
