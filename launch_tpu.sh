#!/usr/bin/env bash
# Cloud TPU VM / pod launcher: create, run on every worker, tail, stop.
#
#   ./launch_tpu.sh create NAME [ACCELERATOR=v4-8] [ZONE=us-central2-b] [VERSION=tpu-ubuntu2204-base]
#   ./launch_tpu.sh run    NAME -- python -m experiments.main --config=... --workdir=$HOME/runs/x --distributed
#   ./launch_tpu.sh tail   NAME          # follow worker 0's log
#   ./launch_tpu.sh stop   NAME          # delete the VM
#
# `run` copies this checkout to every worker, installs requirements.txt with the TPU extra
# of the pinned jax, and starts the command on all workers at once (JAX discovers the
# other hosts itself); output goes to ~/run.log on each worker. Re-running the same
# `run` resumes from the newest checkpoint in --workdir, so a preempted job restarts
# where it stopped (the trainer saves on SIGTERM). The workdir is a local path on each
# worker (a persistent disk for long runs); gs:// workdirs are not supported yet.
set -euo pipefail

action=${1:?usage: $0 create|run|tail|stop NAME ...}
name=${2:?usage: $0 $action NAME ...}
shift 2
zone=${ZONE:-us-central2-b}
ssh_all=(gcloud compute tpus tpu-vm ssh "$name" --zone "$zone" --worker=all)

case "$action" in
  create)
    gcloud compute tpus tpu-vm create "$name" --zone "$zone" \
      --accelerator-type "${1:-v4-8}" --version "${2:-tpu-ubuntu2204-base}"
    ;;
  run)
    [ "${1:-}" = "--" ] && shift
    [ $# -gt 0 ] || { echo "usage: $0 run NAME -- COMMAND..." >&2; exit 2; }
    tar czf /tmp/project.tgz --exclude=.git --exclude=.venv --exclude=workdirs .
    gcloud compute tpus tpu-vm scp /tmp/project.tgz "$name":~/ --zone "$zone" --worker=all
    jax_version=$(grep '^jax==' requirements.txt | cut -d= -f3)
    "${ssh_all[@]}" --command "mkdir -p ~/project && tar xzf ~/project.tgz -C ~/project \
      && cd ~/project && pip install -q -r requirements.txt \
      && pip install -q 'jax[tpu]==${jax_version}' \
      && (nohup $* > ~/run.log 2>&1 &)"
    ;;
  tail)
    gcloud compute tpus tpu-vm ssh "$name" --zone "$zone" --worker=0 --command "tail -f ~/run.log"
    ;;
  stop)
    gcloud compute tpus tpu-vm delete "$name" --zone "$zone" --quiet
    ;;
  *)
    echo "unknown action '$action': use create, run, tail or stop" >&2; exit 2
    ;;
esac
