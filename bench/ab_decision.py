"""Issue 9's A/B rule (docs/method.md, "How the A/B runs decide") applied to a comparison report.

    python src/compare.py --report sale_mb_v1 sale_mb_ab --envs lbf_2s_8x8_2p_2f_coop \\
        --baseline sale_mb --out DIR
    python bench/ab_decision.py DIR [--grid bench/grids/sale_mb_ab.yaml [MORE.yaml ...]] [--control sale_mb] [--seeds 3] \\
        [--time-savers cheapest,model_every_8_no_foresight,model_every_4,no_foresight,rollout_depth_1,...]

Reads the report's `table.csv`, `runs.csv` and `across.csv` (one env: the report's `--envs`), and
prints for each of the grid's variants (other algorithms in the report are left out) its finished seeds, final and AUC IQM, P(variant > control) on the final test
return with its 95% interval, wall time per env step, and its verdict:
- **beats**: the interval of P lies above 0.5 and the AUC IQM is at least the control's;
- **not below** (a time saver only): the interval of P reaches 0.5 and the final IQM is at least
  the lower end of the control's final-IQM interval;
- **below** (a time saver), **does not beat** (a learning change) otherwise;
- **pending** while fewer than `--seeds` of its runs have finished (nothing is decided on them),
  or none is in the report (not started, or its grid left out of `compare.py --report`).
Then what becomes a default: every learning change that beats, and of the time savers that are not
below, the one with the least wall time per env step.
"""
import argparse
import csv
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))

from comparison.grid import grid_from_yaml  # noqa: E402


def read_csv(folder, name):
    path = os.path.join(folder, name)
    if not os.path.isfile(path):
        sys.exit(f"error: no {path}: write the report first (python src/compare.py --report ... --baseline "
                 f"CONTROL --out {folder})")
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def decide(folder, control, variants, time_savers, seeds):
    """(the control's table row, [(variant, figures, verdict)] for each of `variants`)."""
    table = read_csv(folder, "table.csv")
    envs = {row["env"] for row in table}
    if len(envs) != 1:
        sys.exit(f"error: the report holds {len(envs)} envs ({', '.join(sorted(envs))}); write it with --envs ENV")
    groups = {row["alg"]: row for row in table}
    if control not in groups:
        sys.exit(f"error: no control {control!r} in the report; its algorithms: {', '.join(sorted(groups))}")
    improvement = {row["alg"]: row for row in read_csv(folder, "across.csv")
                   if row["measure"] == "p_improvement" and row["over"] == control}
    finished = {}
    for run in read_csv(folder, "runs.csv"):
        finished[run["alg"]] = finished.get(run["alg"], 0) + (run["status"] == "COMPLETED")
    base = groups[control]
    decisions = []
    for alg in variants:
        if alg not in groups:  # its grid was not reported, or none of its runs has tested yet
            decisions.append((alg, None, "pending"))
            continue
        row, p = groups[alg], improvement.get(alg)
        if p is None:
            sys.exit(f"error: across.csv has no P({alg} > {control}): write the report with --baseline {control}")
        figures = {"finished": finished.get(alg, 0), "final": float(row["final_iqm"]), "auc": float(row["auc_iqm"]),
                   "p": float(p["estimate"]), "p_low": float(p["low"]), "p_high": float(p["high"]),
                   "us_per_step": float(row["wall_us_per_env_step"])}
        if figures["finished"] < seeds:
            verdict = "pending"
        elif figures["p_low"] > 0.5 and figures["auc"] >= float(base["auc_iqm"]):
            verdict = "beats"
        elif alg in time_savers:
            not_below = figures["p_high"] >= 0.5 and figures["final"] >= float(base["final_iqm_low"])
            verdict = "not below" if not_below else "below"
        else:
            verdict = "does not beat"
        decisions.append((alg, figures, verdict))
    return base, decisions


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("report", help="the report's folder (--out of compare.py --report)")
    parser.add_argument("--grid", nargs="+", default=[os.path.join("bench", "grids", "sale_mb_ab.yaml")],
                        help="the A/B grid files: their algorithms are the variants judged")
    parser.add_argument("--control", default="sale_mb")
    parser.add_argument("--seeds", type=int, default=3, help="finished runs a variant needs before a verdict")
    parser.add_argument("--time-savers", type=lambda text: text.split(","),
                        default=["cheapest", "model_every_8_no_foresight", "model_every_4", "no_foresight",
                                 "rollout_depth_1", "model_every_8_depth_1"],
                        help="variants that only save time, comma-separated")
    options = parser.parse_args()
    variants = [entry.name for grid in options.grid for entry in grid_from_yaml(grid).algs]
    base, decisions = decide(options.report, options.control, variants, set(options.time_savers), options.seeds)
    print(f"control {options.control}: final IQM {float(base['final_iqm']):.3f} [{float(base['final_iqm_low']):.3f}, "
          f"{float(base['final_iqm_high']):.3f}], AUC IQM {float(base['auc_iqm']):.3f}, "
          f"{float(base['wall_us_per_env_step']):,.0f} us per env step")
    print(f"{'variant':28s} {'kind':12s} {'runs':>4s} {'final':>6s} {'AUC':>6s} {'P(> control) [95% CI]':>22s} "
          f"{'us/step':>8s}  verdict")
    for alg, f, verdict in decisions:
        kind = "time saver" if alg in options.time_savers else "learning"
        if f is None:
            print(f"{alg:28s} {kind:12s} {0:4d} {'no test in the report yet':>47s}  {verdict}")
            continue
        interval = f"{f['p']:.2f} [{f['p_low']:.2f}, {f['p_high']:.2f}]"
        print(f"{alg:28s} {kind:12s} {f['finished']:4d} {f['final']:6.3f} {f['auc']:6.3f} {interval:>22s} "
              f"{f['us_per_step']:8,.0f}  {verdict}")
    winners = [alg for alg, _, verdict in decisions if verdict == "beats" and alg not in options.time_savers]
    savers = sorted((f["us_per_step"], alg) for alg, f, verdict in decisions
                    if alg in options.time_savers and verdict in ("beats", "not below"))
    pending = [alg for alg, _, verdict in decisions if verdict == "pending"]
    print(f"defaults: learning changes that beat: {', '.join(winners) or 'none'}; "
          f"time saver: {savers[0][1] if savers else 'none'}"
          + (f" (not final: {', '.join(pending)} pending)" if pending else ""))


if __name__ == "__main__":
    main()
