#!/usr/bin/env bash
# MAPPO and IPPO against QMIX, 3 seeds, through bench/sample_efficiency.py (which trains through
# src/main.py and prints the table of test returns and wall time per env step).
#   LBF: Foraging-2s-8x8-2p-2f-coop and Foraging-10x10-4p-3f, 2.05M env steps (the env files' budget).
#   MaMuJoCo HalfCheetah 6x1: MAPPO and IPPO with continuous actions (Gaussian policies) against
#   QMIX and MAPPO on 11 bins per joint (QMIX cannot take continuous actions; its buffer cut to 1000 episodes =
#   1M steps to fit in memory), 2.05M env steps.
# Every actor-critic run keeps EPyMARL's defaults (10 parallel envs). A campaign is many CPU-days
# on a 2-core machine: run it on a bigger one, e.g. WORKERS=8 bench/actor_critic_baselines.sh.
# Pass --report-only as the first argument to only print the tables of what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
WORKERS=${WORKERS:-2}
python bench/sample_efficiency.py "$@" --algs qmix mappo ippo \
    --envs lbf_2s_8x8_2p_2f_coop lbf_10x10_4p_3f --seeds 1 2 3 \
    --t-max 2050000 --test-interval 50000 --test-nepisode 100 --workers "$WORKERS" \
    --out results/actor_critic_baselines_lbf
python bench/sample_efficiency.py "$@" --algs mappo \
    --variant qmix_buffer1000=qmix:buffer_size=1000 \
    --variant mappo_continuous=mappo:env_args.action_bins=null \
    --variant ippo_continuous=ippo:env_args.action_bins=null \
    --envs mamujoco --seeds 1 2 3 \
    --t-max 2050000 --test-interval 50000 --test-nepisode 10 --workers "$WORKERS" \
    --out results/actor_critic_baselines_halfcheetah
