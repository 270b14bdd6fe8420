#!/usr/bin/env bash
# Cloud TPU VM / pod-slice launcher: create, set up, run on every worker, tail, stop, delete.
# `./launch_tpu.sh --help` prints the usage; `--dry-run` prints the gcloud commands instead
# of running them.
set -euo pipefail

readonly DEFAULT_RUNTIME_VERSION=tpu-ubuntu2204-base
readonly PYTHON_VERSION=3.11
readonly LIBTPU_FIND_LINKS=https://storage.googleapis.com/jax-releases/libtpu_releases.html
readonly UV_INSTALLER=https://astral.sh/uv/install.sh
readonly CODE_TARBALL=launch_tpu_code.tgz  # scp target, in the workers' home directory
readonly STOP_GRACE_S=120                   # SIGTERM, then this long to save a checkpoint
readonly PROG=$0

usage() {
  cat <<EOF
usage: $PROG [FLAGS] COMMAND [NAME] [-- CMD...]

Commands:
  create NAME          create a TPU VM or pod slice (on-demand; --spot; --queued for a
                       queued resource, with --spot or --reserved)
  setup NAME           copy this checkout to every worker (no .git, .venv, workdirs),
                       install Python $PYTHON_VERSION (uv), a venv, requirements.txt and jax[tpu]
  run NAME -- CMD...   start CMD on every worker at once, in the code directory with the
                       venv active; output goes to ~/$remote_dir/run.log on each worker and is
                       streamed (Ctrl-C stops the stream, not the job)
  tail NAME            stream the log of worker 0 (--worker=N or --worker=all)
  stop NAME            SIGTERM the job on every worker (the trainer saves a checkpoint),
                       SIGKILL after ${STOP_GRACE_S} s; the TPU stays up
  delete NAME          delete the TPU VM (with --queued: the queued resource and its TPU)
  status [NAME]        describe NAME (with --queued: its queued resource); no NAME: list
  list                 list the TPU VMs and queued resources of the zone

Flags (anywhere before --; a flag beats its environment variable):
  --project=ID              GCP project                   [TPU_PROJECT]
  --zone=ZONE               zone, e.g. us-central2-b      [TPU_ZONE]
  --accelerator-type=TYPE   e.g. v4-8, v4-32 (create)     [TPU_TYPE]
  --version=RUNTIME         TPU VM runtime (create)       [TPU_RUNTIME_VERSION]
                            default $DEFAULT_RUNTIME_VERSION
  --spot                    Spot capacity (create)
  --queued                  create / delete / status a queued resource named NAME
                            whose TPU node is also named NAME
  --reserved                use reserved capacity (create)
  --env=KEY=VALUE           export KEY=VALUE for the job (run; repeatable)
  --detach                  start the job and return without streaming its log (run)
  --worker=N|all            which worker's log to stream (tail; default 0)
  --dry-run                 print the commands, one per line, shell-quoted; run nothing
  -h, --help                print this help

Environment: TPU_REMOTE_DIR (directory on the workers, relative to home; default
project), TPU_CODE_DIR (what setup copies; default the directory of this script).

Example, a full pod run:
  export TPU_PROJECT=my-project TPU_ZONE=us-central2-b TPU_TYPE=v4-32
  $PROG create my-pod
  $PROG setup my-pod
  $PROG run my-pod -- python -m experiments.main --distributed \\
      --config=experiments/configs/mnist_cnn.py --workdir=gs://BUCKET/runs/mnist_cnn
  $PROG delete my-pod
EOF
}

usage_error() {  # one line on stderr, exit status 2
  echo "error: $*" >&2
  exit 2
}

fail() {
  echo "error: $*" >&2
  exit 1
}

quote() {  # prints its arguments as one line that a POSIX shell (or shlex) splits back
  local sq="'\\''" word out=()
  for word in "$@"; do
    if [[ $word =~ ^[A-Za-z0-9_@%+=:,./-]+$ ]]; then
      out+=("$word")
    else
      out+=("'${word//\'/$sq}'")
    fi
  done
  printf '%s\n' "${out[*]}"
}

run_cmd() {  # runs a command, or prints it under --dry-run
  if ((dry_run)); then
    quote "$@"
  else
    echo "+ $(quote "$@")" >&2
    "$@"
  fi
}

join_script() {  # joins shell statements into one line ('&' ends a statement by itself)
  local script='' statement
  for statement in "$@"; do
    if [[ $statement == *'&' ]]; then script+="$statement "; else script+="$statement; "; fi
  done
  printf '%s' "${script%[; ] }"
}

# ---- arguments ----------------------------------------------------------------------------

project=${TPU_PROJECT:-}
zone=${TPU_ZONE:-}
accelerator_type=${TPU_TYPE:-}
runtime_version=${TPU_RUNTIME_VERSION:-$DEFAULT_RUNTIME_VERSION}
remote_dir=${TPU_REMOTE_DIR:-project}
script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
code_dir=${TPU_CODE_DIR:-$script_dir}
spot=0 reserved=0 queued=0 detach=0 dry_run=0 have_command=0
worker=0
job_env=()
job_command=()
positional=()

set_flag() {  # flag value
  case $1 in
    --project) project=$2 ;;
    --zone) zone=$2 ;;
    --accelerator-type) accelerator_type=$2 ;;
    --version) runtime_version=$2 ;;
    --worker)
      [[ $2 =~ ^(all|[0-9]+)$ ]] || usage_error "--worker takes a worker number or 'all', not '$2'"
      worker=$2 ;;
    --env)
      [[ $2 =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || usage_error "--env takes KEY=VALUE, not '$2'"
      job_env+=("$2") ;;
  esac
}

while (($#)); do
  arg=$1
  shift
  case $arg in
    --)
      have_command=1
      job_command=("$@")
      break ;;
    -h | --help) usage; exit 0 ;;
    --dry-run) dry_run=1 ;;
    --spot) spot=1 ;;
    --reserved) reserved=1 ;;
    --queued) queued=1 ;;
    --detach) detach=1 ;;
    --project | --zone | --accelerator-type | --version | --worker | --env)
      (($#)) || usage_error "$arg needs a value (see $PROG --help)"
      set_flag "$arg" "$1"
      shift ;;
    --project=* | --zone=* | --accelerator-type=* | --version=* | --worker=* | --env=*)
      set_flag "${arg%%=*}" "${arg#*=}" ;;
    -*) usage_error "unknown flag '$arg' (see $PROG --help)" ;;
    *) positional+=("$arg") ;;
  esac
done

((${#positional[@]})) ||
  usage_error "no command: use create, setup, run, tail, stop, delete, status or list (see $PROG --help)"
command=${positional[0]}
name=${positional[1]:-}
case $command in
  create | setup | run | tail | stop | delete) name_needed=1 ;;
  status) name_needed=0 ;;
  list) name_needed=0; [[ -z $name ]] || usage_error "list takes no NAME" ;;
  *) usage_error "unknown command '$command': use create, setup, run, tail, stop, delete, status or list" ;;
esac
((${#positional[@]} <= 2)) || usage_error "unexpected argument '${positional[2]}' (a command to run goes after --)"
if ((name_needed)) && [[ -z $name ]]; then
  usage_error "$command needs a TPU name: $PROG $command NAME"
fi
if [[ -n $name && ! $name =~ ^[a-z]([-a-z0-9]*[a-z0-9])?$ ]]; then
  usage_error "bad TPU name '$name': lower-case letters, digits and '-', starting with a letter"
fi
if [[ $command == run ]]; then
  ((have_command && ${#job_command[@]})) ||
    usage_error "run needs the command after --: $PROG run NAME -- python -m experiments.main ..."
elif ((have_command)); then
  usage_error "only run takes a command after --"
fi
if ((spot && reserved)); then
  usage_error "--spot and --reserved exclude each other"
fi
[[ $remote_dir =~ ^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$ ]] ||
  usage_error "TPU_REMOTE_DIR must be a plain path relative to home, not '$remote_dir'"

[[ -n $project ]] || usage_error "no project: pass --project or set TPU_PROJECT"
[[ -n $zone ]] || usage_error "no zone: pass --zone or set TPU_ZONE"
if [[ $command == create ]]; then
  [[ -n $accelerator_type ]] ||
    usage_error "no accelerator type: pass --accelerator-type or set TPU_TYPE (e.g. v4-32)"
  [[ -n $runtime_version ]] || usage_error "no runtime version: pass --version or set TPU_RUNTIME_VERSION"
fi

where=(--project="$project" --zone="$zone")
tpu_vm=(gcloud compute tpus tpu-vm)
queued_resources=(gcloud compute tpus queued-resources)
rdir="\"\$HOME/$remote_dir\""  # the remote directory, as remote shell code

# ---- commands -----------------------------------------------------------------------------

do_create() {
  local args
  if ((queued)); then
    args=("${queued_resources[@]}" create "$name" --node-id="$name" "${where[@]}"
          --accelerator-type="$accelerator_type" --runtime-version="$runtime_version")
  else
    args=("${tpu_vm[@]}" create "$name" "${where[@]}"
          --accelerator-type="$accelerator_type" --version="$runtime_version")
  fi
  if ((spot)); then args+=(--spot); fi
  if ((reserved)); then args+=(--reserved); fi
  run_cmd "${args[@]}"
  if ((queued)); then
    echo "queued resource $name requested: when '$PROG status --queued $name' shows ACTIVE," \
         "run '$PROG setup $name'" >&2
  fi
}

do_setup() {
  [[ -f $code_dir/requirements.txt ]] || fail "no requirements.txt in $code_dir"
  local jax_version
  jax_version=$(awk -F'==' '$1 == "jax" { sub(/[[:space:];#].*/, "", $2); print $2; exit }' \
                  "$code_dir/requirements.txt")
  [[ -n $jax_version ]] || fail "no 'jax==VERSION' line in $code_dir/requirements.txt"

  local tmp
  if ((dry_run)); then
    tmp=${TMPDIR:-/tmp}/launch_tpu.XXXXXX
  else
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/launch_tpu.XXXXXX")
    # shellcheck disable=SC2064  # expand $tmp now
    trap "rm -rf '$tmp'" EXIT
  fi
  run_cmd env COPYFILE_DISABLE=1 tar -czf "$tmp/$CODE_TARBALL" --exclude=.git --exclude=.venv \
    --exclude=workdirs --exclude=__pycache__ --exclude=.pytest_cache --exclude='*.pyc' \
    -C "$code_dir" .
  run_cmd "${tpu_vm[@]}" scp "$tmp/$CODE_TARBALL" "$name:$CODE_TARBALL" "${where[@]}" --worker=all

  local d=$rdir py venv_ok jax_req
  py="$d/venv/bin/python"
  printf -v venv_ok '%q' "import sys; sys.exit(sys.version_info[:2] != (${PYTHON_VERSION/./, }))"
  printf -v jax_req '%q' "jax[tpu]==$jax_version"
  local script
  script=$(join_script \
    'set -euo pipefail' \
    "mkdir -p $d" \
    "rm -rf $d/src.new" \
    "mkdir $d/src.new" \
    "tar -xzf \"\$HOME/$CODE_TARBALL\" -C $d/src.new" \
    "rm -f \"\$HOME/$CODE_TARBALL\"" \
    "if [ -d $d/src/workdirs ]; then mv $d/src/workdirs $d/src.new/; fi" \
    "rm -rf $d/src" \
    "mv $d/src.new $d/src" \
    "if [ ! -x $d/bin/uv ]; then curl -LsSf $UV_INSTALLER | env UV_UNMANAGED_INSTALL=$d/bin sh; fi" \
    "$d/bin/uv python install $PYTHON_VERSION" \
    "if ! $py -c $venv_ok 2>/dev/null; then rm -rf $d/venv; $d/bin/uv venv --seed --python $PYTHON_VERSION $d/venv; fi" \
    "$py -m pip install -q --upgrade pip" \
    "$py -m pip install -r $d/src/requirements.txt $jax_req -f $LIBTPU_FIND_LINKS" \
    "$py -c 'import jax; print(\"jax\", jax.__version__)'" \
    "echo \"[\$(hostname)] setup done: code in $d/src, Python $PYTHON_VERSION venv in $d/venv\"")
  run_cmd "${tpu_vm[@]}" ssh "$name" "${where[@]}" --worker=all --command="$script"
}

do_run() {
  local d=$rdir cmd kv exports inner inner_q script
  printf -v cmd '%q ' "${job_command[@]}"
  # jax.distributed.initialize() finds the coordinator and the process ids on Cloud TPU
  # itself; these make output stream, make a missing TPU an error instead of a silent CPU
  # run, and name the TPU for tools that read TPU_NAME.
  exports="PYTHONUNBUFFERED=1 JAX_PLATFORMS=tpu TPU_NAME=$name"
  for kv in ${job_env[@]+"${job_env[@]}"}; do
    printf -v kv '%s=%q' "${kv%%=*}" "${kv#*=}"
    exports+=" $kv"
  done
  inner="cd $d/src && . $d/venv/bin/activate && export $exports && exec ${cmd% }"
  printf -v inner_q '%q' "$inner"
  local steps=(
    'set -euo pipefail'
    "h=\$(hostname)"
    "if [ ! -d $d/src ] || [ ! -f $d/venv/bin/activate ]; then echo \"error: [\$h] no code or venv in $d: run $PROG setup $name first\" >&2; exit 1; fi"
    "if [ -f $d/run.pid ] && kill -0 \"\$(cat $d/run.pid)\" 2>/dev/null; then echo \"error: [\$h] a job is already running (pid \$(cat $d/run.pid)): run $PROG stop $name first\" >&2; exit 1; fi"
    "if [ -f $d/run.log ]; then mv -f $d/run.log $d/run.log.prev; fi"
    ": > $d/run.log"  # exists before tail -F looks for it
    "setsid nohup bash -c $inner_q >> $d/run.log 2>&1 < /dev/null &"
    "pid=\$!"
    "echo \"\$pid\" > $d/run.pid"
    "echo \"[\$h] started pid \$pid; log in $d/run.log\""
  )
  if ((detach)); then
    steps+=('exit 0')
  else
    steps+=(
      "tail -n +1 -F --pid=\"\$pid\" $d/run.log | sed -u \"s/^/[\$h] /\" || true"
      'rc=0'
      "wait \"\$pid\" || rc=\$?"
      "echo \"[\$h] job exited with status \$rc\""
      "exit \"\$rc\""
    )
  fi
  script=$(join_script "${steps[@]}")
  run_cmd "${tpu_vm[@]}" ssh "$name" "${where[@]}" --worker=all --command="$script"
}

do_tail() {
  local d=$rdir prefix='' script
  if [[ $worker == all ]]; then prefix=" | sed -u \"s/^/[\$h] /\""; fi
  script=$(join_script \
    "h=\$(hostname)" \
    "if [ ! -f $d/run.log ]; then echo \"[\$h] no log at $d/run.log: nothing was run yet\" >&2; exit 1; fi" \
    "if [ -f $d/run.pid ] && kill -0 \"\$(cat $d/run.pid)\" 2>/dev/null; then tail -n 200 -F --pid=\"\$(cat $d/run.pid)\" $d/run.log$prefix; else echo \"[\$h] no job running; the end of its log:\" >&2; tail -n 200 $d/run.log$prefix; fi")
  run_cmd "${tpu_vm[@]}" ssh "$name" "${where[@]}" --worker="$worker" --command="$script"
}

do_stop() {
  local d=$rdir script
  script=$(join_script \
    "h=\$(hostname)" \
    "pid=\$(cat $d/run.pid 2>/dev/null || true)" \
    "if [ -z \"\$pid\" ] || ! kill -0 \"\$pid\" 2>/dev/null; then echo \"[\$h] no job running\"; exit 0; fi" \
    "kill -TERM -- \"-\$pid\" 2>/dev/null || kill -TERM \"\$pid\"" \
    "echo \"[\$h] sent SIGTERM to pid \$pid; waiting up to $STOP_GRACE_S s\"" \
    "for _ in \$(seq $STOP_GRACE_S); do kill -0 \"\$pid\" 2>/dev/null || break; sleep 1; done" \
    "if kill -0 \"\$pid\" 2>/dev/null; then kill -KILL -- \"-\$pid\" 2>/dev/null || kill -KILL \"\$pid\"; echo \"[\$h] still running after $STOP_GRACE_S s: sent SIGKILL\"; else echo \"[\$h] stopped\"; fi")
  run_cmd "${tpu_vm[@]}" ssh "$name" "${where[@]}" --worker=all --command="$script"
}

do_delete() {
  if ((queued)); then
    run_cmd "${queued_resources[@]}" delete "$name" "${where[@]}" --force --quiet
  else
    run_cmd "${tpu_vm[@]}" delete "$name" "${where[@]}" --quiet
  fi
}

do_list() {
  run_cmd "${tpu_vm[@]}" list "${where[@]}"
  run_cmd "${queued_resources[@]}" list "${where[@]}"
}

do_status() {
  if [[ -z $name ]]; then
    do_list
  elif ((queued)); then
    run_cmd "${queued_resources[@]}" describe "$name" "${where[@]}"
  else
    run_cmd "${tpu_vm[@]}" describe "$name" "${where[@]}"
  fi
}

"do_$command"
