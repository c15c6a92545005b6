"""Cost of one acting call of an agent network: microseconds per `agent(inputs, hidden)` without
gradient, for the rows one env step feeds it (n_agents x batch_size_run), eagerly and as a
`torch.jit.trace` of the same module (whose outputs are checked to be bitwise the same).

    python bench/acting_cost.py [--agents sale_agent rnn] [--rows 2] [--calls 2000]

Widths are `sale_mb.yaml`'s; an 18-value observation, 6 actions and 2 agents (LBF-sized).
"""
import argparse
import os
import sys
import time
from types import SimpleNamespace

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))

import torch  # noqa: E402

from modules.agents import REGISTRY as agent_registry  # noqa: E402
from run_config import build_config  # noqa: E402

OBS, ACTIONS, AGENTS = 18, 6, 2


def per_call_us(agent, inputs, hidden, calls):
    with torch.no_grad():
        for _ in range(100):
            agent(inputs, hidden)
        start = time.perf_counter()
        for _ in range(calls):
            agent(inputs, hidden)
    return (time.perf_counter() - start) / calls * 1e6


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", nargs="*", default=["sale_agent", "rnn"])
    parser.add_argument("--rows", type=int, default=AGENTS, help="rows per call (agents x envs)")
    parser.add_argument("--calls", type=int, default=2000)
    options = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    args = SimpleNamespace(**build_config("sale_mb", "lbf", []), n_agents=AGENTS, n_actions=ACTIONS,
                           state_shape=AGENTS * OBS, device="cpu")
    input_shape = OBS + ACTIONS + AGENTS
    inputs, hidden = torch.randn(options.rows, input_shape), torch.zeros(options.rows, args.hidden_dim)
    print(f"{'agent':12s} {'eager us':>9s} {'traced us':>10s}  same outputs")
    for name in options.agents:
        agent = agent_registry[name](input_shape, args).eval()
        with torch.no_grad():
            traced = torch.jit.trace(agent, (inputs, hidden), check_trace=False)
            same = all(torch.equal(a, b) for a, b in zip(traced(inputs, hidden), agent(inputs, hidden)))
        print(f"{name:12s} {per_call_us(agent, inputs, hidden, options.calls):9.0f} "
              f"{per_call_us(traced, inputs, hidden, options.calls):10.0f}  {same}")


if __name__ == "__main__":
    main()
