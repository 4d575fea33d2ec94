#!/bin/bash
# usage: bash bench/tmpdir_leaks.sh [CODE_ROOT]  (a checkout; default .)  -> one TSV row per command: command, entries left in TMPDIR, exit code, stderr lines
# What one dgm command leaves in TMPDIR (an empty folder before it): success, failure, bad input, Ctrl-C.
# Backs docs/results/reliability/tmpdir.json (run once on the code before the fix and once after).
set -u
CODE=$(cd "${1:-.}" && pwd); PY=${PY:-$PWD/.venv/bin/python}
export PYTHONPATH=$CODE DGLBACKEND=pytorch PYTHONHASHSEED=0 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
T=$(mktemp -d /tmp/tmpclean-T.XXXX); O=$(mktemp -d /tmp/tmpclean-O.XXXX)
mkdir $O/data; head -40 $CODE/tests/data/moses_sample.smi > $O/data/train.smi
cp $O/data/train.smi $O/data/valid.smi; cp $O/data/train.smi $O/data/train_all.smi
CFG='{"model": {"d_model": 16, "n_layers": 1, "n_heads": 2, "max_length": 80, "latent_dim": 4, "encoder_hidden": 8, "encoder_layers": 1}, "train": {"accelerator": "cpu", "max_steps": 1, "batch_size": 8}}'
run() { name=$1; shift; rm -rf $T; mkdir $T; (cd $CODE && TMPDIR=$T $PY -m dgm_science.cli "$@" >/dev/null 2>$O/err); rc=$?
  printf '%s\t%s\t%s\t%s\n' "$name" "$(ls -A $T | wc -l)" "$rc" "$(wc -l < $O/err)"; }
run "collect umaze --episodes 3 --episode-steps 50" collect umaze --out $O/c --episodes 3 --episode-steps 50
run "rollout --checkpoint tests/data/umaze_planner.ckpt --maze umaze --episodes 3" rollout --checkpoint $CODE/tests/data/umaze_planner.ckpt --maze umaze --episodes 3 --out $O/r.json --device cpu
run "rollout --baseline straight --maze umaze --episodes 100" rollout --baseline straight --maze umaze --episodes 100 --out $O/rb.json
run "train --model graph-vae (fails: no graphs_train.npz)" train --model graph-vae --data $O/data --out $O/run/m.ckpt --config "$CFG" --threads 1
run "rollout --checkpoint missing.ckpt (bad input)" rollout --checkpoint $O/missing.ckpt --maze umaze --episodes 3 --out $O/r2.json
rm -rf $T; mkdir $T
(cd $CODE && TMPDIR=$T $PY -c "
import os, signal, subprocess, sys, time
p = subprocess.Popen([sys.executable, '-m', 'dgm_science.cli', 'collect', 'umaze', '--out', '$O/big', '--episodes', '1000', '--episode-steps', '1000', '--yes'], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
time.sleep(8); p.send_signal(signal.SIGINT); _, err = p.communicate()
open('$O/err', 'w').write(err); print(p.returncode if p.returncode >= 0 else 128 - p.returncode, file=open('$O/rc', 'w'))
")
printf '%s\t%s\t%s\t%s\n' "collect ... --episodes 1000 --episode-steps 1000 --yes, SIGINT after 8 s" "$(ls -A $T | wc -l)" "$(cat $O/rc)" "$(wc -l < $O/err)"
grep -c Traceback $O/err | sed 's/^/  tracebacks in stderr: /'; ls -A $T | sed 's/^/  left: /' | head -3
rm -rf $T $O
