"""Fail on any import cycle between the modules of a package, lazy imports included.

grimp (import-linter's graph builder) reads every import statement, at module level or inside
functions; networkx lists the cycles. A cycle is reported as its modules in import order.
"""

import sys

import grimp
import networkx as nx


def main(package: str) -> int:
    graph = grimp.build_graph(package, cache_dir=None)
    digraph = nx.DiGraph()
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            # A package's __init__ importing its own submodule is not a cycle of the design.
            if not imported.startswith(module + ".") and not module.startswith(imported + "."):
                digraph.add_edge(module, imported)
    cycles = [c for c in nx.simple_cycles(digraph)]
    for cycle in cycles[:20]:
        print("import cycle: " + " -> ".join([*cycle, cycle[0]]))
    print(f"{len(graph.modules)} modules, {len(cycles)} import cycles")
    return 1 if cycles else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
