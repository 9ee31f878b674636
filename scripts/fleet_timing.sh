#!/bin/sh
# Wall time of `mnetctl cluster up --local host,raspberry-pi-4` plus a 4-variant sweep benched on both devices,
# then a cached re-run, inside a loopback-only network namespace (root: unshare -n).
#   sudo unshare -n sh -c 'ip link set lo up; PYTHONPATH=$PWD sh scripts/fleet_timing.sh [SWEEP FLAGS]'
# e.g. extra flags: --max-seconds 0 (no retaking of loaded timing rounds)
set -e
WORK=$(mktemp -d)
export MNETCTL_CLUSTER_STATE=$WORK/state.json MNETCTL_CACHE=$WORK/cache
PY=${PYTHON:-python}
SWEEP="$PY -m mnetctl sweep --cluster 127.0.0.1:6379 --device host,raspberry-pi-4 --arch v1 --widths 0.25,0.5 --precisions fp32,int8"
T0=$(date +%s.%N)
$PY -m mnetctl cluster up --local host,raspberry-pi-4 2>/dev/null
T1=$(date +%s.%N)
$SWEEP -o $WORK/out "$@" > $WORK/sweep.out 2>&1 || echo "sweep exit code $?"
T2=$(date +%s.%N)
$SWEEP -o $WORK/out2 "$@" > /dev/null 2>&1 || echo "cached sweep exit code $?"
T3=$(date +%s.%N)
$PY -m mnetctl cluster down
$PY -c "print(f'cluster up {$T1-$T0:.1f} s, sweep {$T2-$T1:.1f} s, together {$T2-$T0:.1f} s, cached re-run {$T3-$T2:.1f} s')"
uptime
rm -rf "$WORK"
