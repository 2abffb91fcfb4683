#!/usr/bin/env bash
# Multi-node (or single-node) fairseq-train through torchrun.
#
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=node0 MASTER_PORT=29500 NPROC_PER_NODE=8 \
#       scripts/launch/torchrun.sh DATA --user-dir fairseq_sparse --task masked_lm ...
#   (run the same command on every node, with that node's NODE_RANK)
#
# Environment (defaults in brackets):
#   NNODES          number of nodes                                  [$SLURM_NNODES or 1]
#   NODE_RANK       rank of this node, 0..NNODES-1 (static rdzv)      [$SLURM_NODEID or 0]
#   MASTER_ADDR     address of node 0, reachable from every node      [127.0.0.1]
#   MASTER_PORT     free TCP port on node 0                           [29500]
#   NPROC_PER_NODE  processes per node (one per GPU)                  [GPU count; 1 without GPUs]
#   LAUNCH_DEVICE   gpu | cpu | auto. cpu = gloo on the CPU, for testing the launch path [auto]
#   RDZV_BACKEND    static (uses NODE_RANK) | c10d (elastic; ranks assigned by the store) [static]
#   RDZV_ID         job id for c10d rendezvous                        [fairseq_sparse]
#   MAX_RESTARTS    torchrun --max-restarts                           [0]
#   PYTHON          interpreter with fairseq + fairseq_sparse         [python]
#   DRY_RUN=1       print the torchrun command instead of running it
#
# Every process gets explicit distributed flags (fairseq's own torchrun detection is skipped):
#   --distributed-init-method env:// --distributed-world-size $WORLD_SIZE
#   --distributed-rank $RANK --distributed-no-spawn, plus --device-id $LOCAL_RANK on GPUs, or
#   --cpu --distributed-backend gloo --ddp-backend legacy_ddp in cpu mode (fairseq's pytorch_ddp
#   passes device_ids=[0] for a CPU module and fails). Explicit flags matter: with one GPU per node
#   fairseq's default world size is 1 and it would silently train NNODES independent models.
#
# Arguments with a hydra --config-dir/--config-name (-cd/-cn) run fairseq-hydra-train instead of
# fairseq-train (the YAML recipes of examples/pretraining); the same settings are then passed as
# hydra overrides (distributed_training.*, and common.cpu=true in cpu mode).
set -euo pipefail

PYTHON=${PYTHON:-python}

if [[ "${FAIRSEQ_SPARSE_LAUNCH_WORKER:-0}" == 1 ]]; then
    # One training process, started by torchrun (which set RANK, WORLD_SIZE, LOCAL_RANK).
    : "${RANK:?RANK not set: this mode is started by torchrun}" "${WORLD_SIZE:?}" "${LOCAL_RANK:?}"
    for arg in "$@"; do
        case "$arg" in
            --config-dir|--config-dir=*|--config-name|--config-name=*|-cd|-cn)
                extra=(distributed_training.distributed_init_method=env://
                       "distributed_training.distributed_world_size=$WORLD_SIZE"
                       "distributed_training.distributed_rank=$RANK" distributed_training.distributed_no_spawn=true)
                if [[ "${LAUNCH_DEVICE:-gpu}" == cpu ]]; then
                    extra+=(common.cpu=true distributed_training.distributed_backend=gloo
                            distributed_training.ddp_backend=legacy_ddp)
                else
                    extra+=("distributed_training.device_id=$LOCAL_RANK")
                fi
                exec "$PYTHON" -m fairseq_cli.hydra_train "$@" "${extra[@]}" ;;
        esac
    done
    extra=(--distributed-init-method env:// --distributed-world-size "$WORLD_SIZE"
           --distributed-rank "$RANK" --distributed-no-spawn)
    if [[ "${LAUNCH_DEVICE:-gpu}" == cpu ]]; then
        extra+=(--cpu --distributed-backend gloo --ddp-backend legacy_ddp)
    else
        extra+=(--device-id "$LOCAL_RANK")
    fi
    exec "$PYTHON" -m fairseq_cli.train "$@" "${extra[@]}"
fi

if [[ $# -eq 0 || "$1" == -h || "$1" == --help ]]; then
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
    exit 0
fi

LAUNCH_DEVICE=${LAUNCH_DEVICE:-auto}
if [[ "$LAUNCH_DEVICE" == auto ]]; then
    if [[ "$("$PYTHON" -c 'import torch; print(int(torch.cuda.is_available()))')" == 1 ]]; then
        LAUNCH_DEVICE=gpu
    else
        LAUNCH_DEVICE=cpu
    fi
fi
case "$LAUNCH_DEVICE" in
    gpu|cpu) ;;
    *) echo "torchrun.sh: LAUNCH_DEVICE must be gpu, cpu or auto, got '$LAUNCH_DEVICE'" >&2; exit 2 ;;
esac
if [[ -z "${NPROC_PER_NODE:-}" ]]; then
    if [[ "$LAUNCH_DEVICE" == gpu ]]; then
        NPROC_PER_NODE=$("$PYTHON" -c 'import torch; print(torch.cuda.device_count())')
    else
        NPROC_PER_NODE=1
    fi
fi
NNODES=${NNODES:-${SLURM_NNODES:-1}}
NODE_RANK=${NODE_RANK:-${SLURM_NODEID:-0}}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
MASTER_PORT=${MASTER_PORT:-29500}
RDZV_BACKEND=${RDZV_BACKEND:-static}

for var in NNODES NPROC_PER_NODE NODE_RANK MASTER_PORT; do
    if ! [[ "${!var}" =~ ^[0-9]+$ ]]; then
        echo "torchrun.sh: $var must be a non-negative integer, got '${!var}'" >&2; exit 2
    fi
done
if (( NNODES < 1 || NPROC_PER_NODE < 1 )); then
    echo "torchrun.sh: NNODES and NPROC_PER_NODE must be >= 1 (got $NNODES, $NPROC_PER_NODE)" >&2; exit 2
fi
if (( NODE_RANK >= NNODES )); then
    echo "torchrun.sh: NODE_RANK=$NODE_RANK must be < NNODES=$NNODES" >&2; exit 2
fi

case "$RDZV_BACKEND" in
    static) rdzv=(--node-rank "$NODE_RANK" --master-addr "$MASTER_ADDR" --master-port "$MASTER_PORT") ;;
    c10d)   rdzv=(--rdzv-backend c10d --rdzv-endpoint "$MASTER_ADDR:$MASTER_PORT"
                  --rdzv-id "${RDZV_ID:-fairseq_sparse}") ;;
    *) echo "torchrun.sh: RDZV_BACKEND must be static or c10d, got '$RDZV_BACKEND'" >&2; exit 2 ;;
esac

cmd=("$PYTHON" -m torch.distributed.run --nnodes "$NNODES" --nproc-per-node "$NPROC_PER_NODE"
     "${rdzv[@]}" --max-restarts "${MAX_RESTARTS:-0}" --no-python "${BASH_SOURCE[0]}" "$@")
if [[ "${DRY_RUN:-0}" == 1 ]]; then
    echo "LAUNCH_DEVICE=$LAUNCH_DEVICE ${cmd[*]}"
    exit 0
fi
export FAIRSEQ_SPARSE_LAUNCH_WORKER=1 LAUNCH_DEVICE PYTHON
exec "${cmd[@]}"
