#!/usr/bin/env python3
"""Reference timing for `vonctl paths --pairs`: the same min-cost pair of
link-disjoint paths, computed with networkx (a min-cost flow of 2 units).

  scripts/pairs-networkx.py generate N TOPO PAIRS   # ring + chords, avg degree 4
  scripts/pairs-networkx.py run TOPO PAIRS          # prints load and per-pair times

Only for measuring (docs/benchmarks.md); vonctl does not need it.
"""
import random
import sys
import time


def generate(n, topo, pairs, seed=7):
    rnd = random.Random(seed)
    links = {(i, (i + 1) % n) for i in range(n)}
    while len(links) < 2 * n:
        a, b = rnd.randrange(n), rnd.randrange(n)
        if a != b and (a, b) not in links and (b, a) not in links:
            links.add((a, b))
    with open(topo, "w") as f:
        f.write("nodes:\n")
        for i in range(n):
            f.write(f"  - {{name: r{i}, kind: router}}\n")
        f.write("links:\n")
        for a, b in sorted(links):
            f.write(f"  - {{a: r{a}, b: r{b}, capacity: 1Gbit, cost: {rnd.randint(1, 100)}}}\n")
    with open(pairs, "w") as f:
        for _ in range(256):
            f.write(f"r{rnd.randrange(n)} r{rnd.randrange(n)}\n")


def run(topo, pairs):
    import networkx as nx
    import yaml

    t0 = time.perf_counter()
    with open(topo) as f:
        doc = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    g = nx.DiGraph()
    for link in doc["links"]:
        a, b, c = link["a"], link["b"], int(link.get("cost", 1))
        g.add_edge(a, b, capacity=1, weight=c)
        g.add_edge(b, a, capacity=1, weight=c)
    load = time.perf_counter() - t0
    todo = [l.split() for l in open(pairs) if l.split() and not l.startswith("#")]
    t1 = time.perf_counter()
    total = 0
    for s, t in todo:
        if s == t:
            continue
        h = g.copy(as_view=False)
        h.nodes[s]["demand"], h.nodes[t]["demand"] = -2, 2
        try:
            total += nx.min_cost_flow_cost(h, weight="weight", capacity="capacity")
        except nx.NetworkXUnfeasible:
            pass
    per = (time.perf_counter() - t1) / len(todo)
    print(f"nodes {g.number_of_nodes()} arcs {g.number_of_edges()} load {load*1000:.0f} ms "
          f"pairs {len(todo)} per pair {per*1000:.1f} ms (sum of costs {total})")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "generate":
        generate(int(sys.argv[2]), sys.argv[3], sys.argv[4])
    elif len(sys.argv) == 4 and sys.argv[1] == "run":
        run(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
