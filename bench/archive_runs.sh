#!/usr/bin/env bash
# Keep a comparison's finished cells in git, and put them back where src/compare.py looks for them.
#
#   bench/archive_runs.sh save GRID_DIR DEST     each done cell of GRID_DIR (a comparison's folder, e.g.
#                                                results/comparisons/NAME): its cell.json and its Sacred
#                                                records (config, run, metrics) into DEST/cells/
#   bench/archive_runs.sh restore GRID_DIR DEST  the archived cells back into GRID_DIR (a cell already
#                                                there is left as it is)
#
# A restored cell is `done` and has no checkpoint, so `src/compare.py --grid=...` skips it and runs only
# the rest: a campaign that spans machines whose results/ does not survive goes on from what was archived.
# `src/compare.py --report DEST ...` reads the archive directly. Checkpoints are not archived (too large).
set -euo pipefail
usage() { echo "usage: $0 save|restore GRID_DIR DEST" >&2; exit 2; }
[ $# -eq 3 ] || usage
action=$1 live=$2 dest=$3

case $action in
save)
    [ -d "$live/cells" ] || { echo "error: no comparison at $live" >&2; exit 1; }
    mkdir -p "$dest/cells"
    dest=$(cd "$dest" && pwd)   # absolute: the copies below run from inside the grid's folder
    saved=0
    for cell in "$live"/cells/*/; do
        cell=${cell%/}
        grep -q '"status": "done"' "$cell/cell.json" 2>/dev/null || continue
        id=$(basename "$cell")
        mkdir -p "$dest/cells/$id"
        cp "$cell/cell.json" "$dest/cells/$id/"
        (cd "$live/cells" && find "$id/sacred" -regextype posix-extended \
            -regex '.*/[0-9]+/(config|run|metrics)\.json' -exec cp --parents -t "$dest/cells/" {} +)
        saved=$((saved + 1))
    done
    echo "saved $saved done cells of $live into $dest/cells"
    ;;
restore)
    [ -d "$dest/cells" ] || { echo "error: no archived cells at $dest/cells" >&2; exit 1; }
    mkdir -p "$live/cells"
    for cell in "$dest"/cells/*/; do
        id=$(basename "$cell")
        if [ -e "$live/cells/$id/cell.json" ]; then
            echo "keep $id: already in $live"
        else
            cp -r "$cell" "$live/cells/$id"
            echo "restored $id"
        fi
    done
    ;;
*) usage ;;
esac
